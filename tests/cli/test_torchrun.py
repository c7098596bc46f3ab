"""Commands under torchrun (gloo processes on CPU): rank 0 alone prints and writes, errors stay one line."""

from __future__ import annotations

import csv
import fcntl
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from test_study import make_setup

from transfer_neurons.cli import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(rank: int, world: int, port: int, argv: list[str], folder: str) -> None:
    """One torchrun-style worker running the command line; its stdout, stderr and exit code go to files."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with open(f"{folder}/out{rank}.txt", "w") as out, open(f"{folder}/err{rank}.txt", "w") as err:
        sys.stdout, sys.stderr = out, err
        try:
            code = main(argv)
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            if dist.is_initialized():
                dist.destroy_process_group()
    Path(folder, f"code{rank}.txt").write_text(str(code))


def torchrun(argv: list[str], folder: Path, world: int = 2) -> list[tuple[int, str, str]]:
    """Each rank's (exit code, stdout, stderr) for the command line run by `world` processes."""
    folder.mkdir(exist_ok=True)
    mp.spawn(run_cli, args=(world, free_port(), argv, str(folder)), nprocs=world, join=True)
    return [(int((folder / f"code{r}.txt").read_text()), (folder / f"out{r}.txt").read_text(),
             (folder / f"err{r}.txt").read_text()) for r in range(world)]


def rows(path: Path) -> list[dict]:
    """A CSV's rows."""
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny saved model, its data files and one Type-1 detection made by one process."""
    root = tmp_path_factory.mktemp("torchrun")
    options = make_setup(root)
    assert main(["detect", "--model", options["model"], "--type", "type1", "--lang", "ja", "--centroid-data",
                 options["data"]["parallel"], "--limit", "8", "--top-n", "6", "--batch-size", "2",
                 "--out", str(root / "det")]) == 0
    return root, options


def test_rank_0_alone_prints_and_writes(setup, tmp_path):
    root, options = setup
    argv = ["ablate", "--model", options["model"], "--detection", str(root / "det"), "--data",
            options["data"]["parallel"], "--lang", "ja", "--controls", "anti", "--batch-size", "2",
            "--out", str(tmp_path / "ablate")]
    (code0, out0, _), (code1, out1, err1) = torchrun(argv, tmp_path / "ranks")
    assert (code0, code1) == (0, 0)
    assert out0.count("wrote ") == 1 and out1 == "" and "warning" not in err1
    assert sorted(p.name for p in (tmp_path / "ablate").iterdir()) == [
        ".transfer-neurons-files.json", "ablate.csv", "ablate.json", "ablate.png"]


def test_fewer_sentences_than_ranks_still_runs(setup, tmp_path):
    """Deactivating every position shares out single sentences: a third rank gets none of 2 pairs."""
    root, options = setup
    argv = ["similarity", "--model", options["model"], "--detection", str(root / "det"), "--data",
            options["data"]["parallel"], "--limit", "2", "--mode", "all", "--controls", "anti", "--batch-size", "2"]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    ranks = torchrun([*argv, "--out", str(tmp_path / "three")], tmp_path / "ranks", world=3)
    assert [code for code, _, _ in ranks] == [0, 0, 0], [err for _, _, err in ranks]

    one, three = rows(tmp_path / "one/similarity.csv"), rows(tmp_path / "three/similarity.csv")
    assert [r["condition"] for r in three] == [r["condition"] for r in one]
    for a, b in zip(one, three):
        assert float(a["mean"]) == pytest.approx(float(b["mean"]), abs=1e-6)


def test_a_locked_study_folder_is_one_line_on_every_rank(setup, tmp_path):
    _, options = setup
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({**options, "stages": ["layers"]}), encoding="utf-8")
    out = tmp_path / "study"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the folder
        ranks = torchrun(["run", "--config", str(config), "--out", str(out)], tmp_path / "ranks")
    for code, _, err in ranks:
        assert code == 2 and "Traceback" not in err
        assert err.strip().endswith("another `transfer-neurons run` is using this folder")


def test_lm_eval_tasks_run_whole_on_every_rank(setup, tmp_path):
    pytest.importorskip("lm_eval")
    from lm_eval_tasks import write_prox_tasks

    root, options = setup
    tasks = write_prox_tasks(tmp_path / "tasks")
    argv = ["lm-eval", "--model", options["model"], "--detection", str(root / "det"), "--tasks", "tiny_prox_ja",
            "--include-path", str(tasks), "--only-included", "--controls", "", "--limit", "2", "--batch-size", "2"]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    ranks = torchrun([*argv, "--out", str(tmp_path / "two")], tmp_path / "ranks")
    assert [code for code, _, _ in ranks] == [0, 0], [err for _, _, err in ranks]
    one, two = rows(tmp_path / "one/lm_eval.csv"), rows(tmp_path / "two/lm_eval.csv")
    assert [(r["task"], r["metric"], r["condition"]) for r in two] == [(r["task"], r["metric"], r["condition"]) for r in one]
    for a, b in zip(one, two):  # thread counts differ between the processes: floats agree to their last digits
        assert float(b["value"]) == pytest.approx(float(a["value"]), abs=1e-6)
