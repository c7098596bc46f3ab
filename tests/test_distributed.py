"""Data-parallel detection: 2 gloo processes give the single-process centroids and scores, rank 0 writes."""

import json
import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny import SENTENCES, assert_same_ranking, tiny_lm

from transfer_neurons import distributed
from transfer_neurons.centroids import language_centroids
from transfer_neurons.detection import detect, read_neurons, write_detection
from transfer_neurons.scoring import score_neurons

WORLD_SIZE = 2
ARCHS = ("llama", "gemma3_text")
# 7 sentences: the shards (every 2nd sentence) differ in size, so a plain mean of means would be wrong
TEXTS = SENTENCES + ("Het regent al de hele dag in Amsterdam.",)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_rank(rank: int, port: int, folder: str) -> None:
    """One torchrun-style worker: join the group from the environment, detect, save what it got."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init_from_env()
    try:
        assert len(distributed.shard(TEXTS)) == (4 if rank == 0 else 3)
        for arch in ARCHS:
            lm = tiny_lm(arch)
            centroids = language_centroids(lm, TEXTS, batch_size=2)
            scores = score_neurons(lm, centroids, TEXTS, batch_size=3, progress=None)
            np.savez(os.path.join(folder, f"{arch}-rank{rank}.npz"), centroids=centroids.numpy(),
                     scores=scores.scores, magnitudes=scores.magnitudes, count=scores.num_sentences)
            det = detect(lm, "type2", "ja", TEXTS, centroids, top_n=10, batch_size=3)
            write_detection(det, os.path.join(folder, f"{arch}-det-rank{rank}"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process(tmp_path):
    mp.spawn(run_rank, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    assert not distributed.is_active()
    for arch in ARCHS:
        lm = tiny_lm(arch)
        centroids = language_centroids(lm, TEXTS, batch_size=2)
        single = score_neurons(lm, centroids, TEXTS, batch_size=3, progress=None)
        for rank in range(WORLD_SIZE):
            got = np.load(tmp_path / f"{arch}-rank{rank}.npz")
            assert int(got["count"]) == len(TEXTS)
            assert np.abs(got["centroids"] - centroids.numpy()).max() <= 1e-5
            assert np.abs(got["scores"] - single.scores).max() <= 1e-5
            np.testing.assert_allclose(got["magnitudes"], single.magnitudes, rtol=1e-4, atol=1e-6)
        written = sorted(p.name for p in (tmp_path / f"{arch}-det-rank0").iterdir())
        assert written == ["centroids.npy", "magnitudes.npy", "meta.json", "neurons.json", "scores.npy"]
        assert not (tmp_path / f"{arch}-det-rank1").exists()
        assert json.loads((tmp_path / f"{arch}-det-rank0" / "meta.json").read_text())["processes"] == WORLD_SIZE
        ranked = detect(lm, "type2", "ja", TEXTS, centroids, top_n=10, batch_size=3).neurons
        assert_same_ranking(read_neurons(tmp_path / f"{arch}-det-rank0"), ranked, single.scores, atol=1e-5)
