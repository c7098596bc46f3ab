"""`run` under torchrun: 2 gloo processes give the single-process results.json; rank 0 alone locks and writes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_study import make_setup

from transfer_neurons import distributed
from transfer_neurons.models.loading import load_model
from transfer_neurons.study import resolve_config, run_study

WORLD_SIZE = 2
STAGES = ["similarity", "alignment", "latent_spaces", "specificity"]
VOLATILE = {"seconds", "finished", "generated", "run", "processes"}  # timings and run records, not results
TOLERANCE = 1e-6  # shards batch other sentences together, which moves float sums in the last digits


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_rank(rank: int, port: int, options: dict, out: str) -> None:
    """One torchrun-style worker running the whole study."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init_from_env()
    try:
        run = run_study(resolve_config(options), out, lm=load_model(options["model"]))
        assert all(s.status == "computed" for s in run.stages), [(s.name, s.error) for s in run.stages]
    finally:
        dist.destroy_process_group()


def assert_close(got, want, where: str = "results") -> None:
    """Equal structure and strings; numbers within TOLERANCE; volatile fields skipped."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for key in want:
            if key not in VOLATILE:
                assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, (int, float)) and abs(got - want) <= TOLERANCE * max(1.0, abs(want)), (where, got, want)
    else:
        assert got == want, (where, got, want)


def test_two_processes_give_the_single_process_study(tmp_path: Path):
    torch.set_num_threads(1)
    options = {**make_setup(tmp_path), "stages": STAGES}
    single = run_study(resolve_config(options), tmp_path / "one", lm=load_model(options["model"]))
    assert all(s.status == "computed" for s in single.stages), [(s.name, s.error) for s in single.stages]
    mp.spawn(run_rank, args=(free_port(), options, str(tmp_path / "two")), nprocs=WORLD_SIZE, join=True)
    one = json.loads((tmp_path / "one/results.json").read_text())
    two = json.loads((tmp_path / "two/results.json").read_text())
    assert_close(two, one)
    assert json.loads((tmp_path / "two/run.json").read_text())["processes"] == WORLD_SIZE
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("transfer-neurons-rank*"))  # rank 1's folders are gone
