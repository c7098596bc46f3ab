"""`run` under torchrun: 2 gloo processes give the single-process results.json; rank 0 alone locks and writes."""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_study import make_setup

from transfer_neurons import batching, distributed
from transfer_neurons.models.loading import load_model
from transfer_neurons.study import resolve_config, run_study
from transfer_neurons.study.engine import Stage, execute

WORLD_SIZE = 2
STAGES = ["similarity", "alignment", "latent_spaces", "specificity", "qa", "reasoning", "logit_lens"]
ITEM_FILES = ["qa/type1-ja/qa_answers.csv", "reasoning/type1-ko/reasoning_items.csv", "logit_lens/type2-ja/logit_lens.csv"]
LOGIT_BYTES = 5 * 4 * 300  # lens chunks of 5 states (vocabulary 300), so the ranks split them
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
    batching.LOGIT_BYTES = LOGIT_BYTES
    assert distributed.init_from_env()
    try:
        run = run_study(resolve_config(options), out, lm=load_model(options["model"]))
        assert all(s.status == "computed" for s in run.stages), [(s.name, s.error) for s in run.stages]
    finally:
        dist.destroy_process_group()


def csv_values(path: Path) -> list[dict]:
    """A CSV's rows with every number (and space-separated list of numbers) read as floats."""
    def value(text: str):
        try:
            return [float(v) for v in text.split()] if " " in text.strip() else float(text)
        except ValueError:
            return text

    with path.open(encoding="utf-8", newline="") as handle:
        return [{key: value(text) for key, text in row.items()} for row in csv.DictReader(handle)]


def assert_close(got, want, where: str = "results", tolerance: float = TOLERANCE) -> None:
    """Equal structure and strings; numbers within `tolerance` (relative above 1); volatile fields skipped."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for key in want:
            if key not in VOLATILE:
                assert_close(got[key], want[key], f"{where}.{key}", tolerance)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{where}[{i}]", tolerance)
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, (int, float)) and abs(got - want) <= tolerance * max(1.0, abs(want)), (where, got, want)
    else:
        assert got == want, (where, got, want)


def test_two_processes_give_the_single_process_study(tmp_path: Path, monkeypatch):
    """Every stage splits its sentences, questions or lens states over the ranks (batches of 2: several per stage)."""
    torch.set_num_threads(1)
    monkeypatch.setattr(batching, "LOGIT_BYTES", LOGIT_BYTES)
    options = {**make_setup(tmp_path), "stages": STAGES, "batch_size": 2}
    single = run_study(resolve_config(options), tmp_path / "one", lm=load_model(options["model"]))
    assert all(s.status == "computed" for s in single.stages), [(s.name, s.error) for s in single.stages]
    leftovers = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("transfer-neurons-rank*"))  # of crashed earlier runs
    mp.spawn(run_rank, args=(free_port(), options, str(tmp_path / "two")), nprocs=WORLD_SIZE, join=True)
    one = json.loads((tmp_path / "one/results.json").read_text())
    two = json.loads((tmp_path / "two/results.json").read_text())
    assert_close(two, one)
    for name in ITEM_FILES:  # answers, option log-likelihoods and lens masses, beyond the summary in results.json
        assert_close(csv_values(tmp_path / "two" / name), csv_values(tmp_path / "one" / name), name)
    assert json.loads((tmp_path / "two/run.json").read_text())["processes"] == WORLD_SIZE
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("transfer-neurons-rank*")) <= leftovers  # rank 1's are gone


def fail_on_rank_1(ctx) -> dict:
    """A stage that fails on rank 1 alone (as a GPU out of memory there would)."""
    if distributed.rank() == 1:
        raise ValueError("rank 1 ran out of something")
    return {"title": "fine"}


def run_failing_stage(rank: int, port: int, out: str) -> None:
    """One worker running a one-stage study whose stage fails on rank 1; rank 0 records what it saw."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    assert distributed.init_from_env()
    try:
        stage = Stage("probe", "probe", {}, (), (), fail_on_rank_1)
        run = execute([stage], {"stages": []}, Path(out), {}, {}, model=None, provider=None)
        Path(out, f"error{rank}.txt").write_text(str(run.stages[0].error))
    finally:
        dist.destroy_process_group()


def test_a_stage_failing_on_one_rank_reports_that_ranks_error(tmp_path: Path):
    mp.spawn(run_failing_stage, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    assert (tmp_path / "error0.txt").read_text() == "TransferNeuronsError: on torchrun rank 1: ValueError: rank 1 ran out of something"
    assert "ValueError: rank 1 ran out" in (tmp_path / "errors/probe.txt").read_text()
    assert not (tmp_path / "probe").exists()
