"""Fault injection: every user-side fault ends with exit 2, one error line naming the path, option or
line, and no partial output (or, for a killed study, a resume that gives the uninterrupted results).

Faults: unwritable --out (a file, a file as parent, a read-only parent), missing inputs, a device
this machine lacks, a text file named .gguf, an unknown model offline, a full disk (during detect
and during a study), a read-only study folder, a detection applied to another model, oversized
inputs and --top-n, a second run on a busy study folder, and kill -9 at several points of `run`.

Tests run as root on some machines, where permission bits do not stop writes; a read-only folder
is then simulated where the kernel would answer (creating a file in it fails with EACCES). A full
disk is the kernel's own answer: temporary files in the output folder are written to /dev/full.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny import save_model, tiny_lm, write_jsonl

from transfer_neurons.cli import main
from transfer_neurons.detection import read_neurons

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROWS = [
    ("The cat sleeps.", "猫が寝ている。"),
    ("I like green tea.", "緑茶が好きです。"),
    ("Where is the station?", "駅はどこですか。"),
    ("It is raining today.", "今日は雨が降っています。"),
    ("My brother is a doctor.", "兄は医者です。"),
    ("The book is on the table.", "本は机の上にあります。"),
]
REL, ABS = 1e-5, 1e-6  # float32 sums may differ in the last digits between processes and thread counts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two saved tiny models of one shape (other weights), a GPT-2 one, parallel data and a detection of model a."""
    root = tmp_path_factory.mktemp("faults")
    save_model(tiny_lm("llama", seed=0), root / "model_a")
    save_model(tiny_lm("llama", seed=1), root / "model_b")
    save_model(tiny_lm("gpt2"), root / "gpt2")
    write_jsonl(root / "pairs.jsonl", [{"en": en, "ja": ja} for en, ja in ROWS])
    assert main(["detect", "--type", "type1", "--lang", "ja", "--model", str(root / "model_a"), "--batch-size", "4",
                 "--centroid-data", str(root / "pairs.jsonl"), "--score-data", str(root / "pairs.jsonl"),
                 "--top-n", "6", "--out", str(root / "det_a")]) == 0
    return root


def detect_args(root: Path, out: Path, model: str = "model_a") -> list[str]:
    """A small `detect` on the tiny data."""
    data = str(root / "pairs.jsonl")
    return ["detect", "--type", "type1", "--lang", "ja", "--model", str(root / model), "--batch-size", "4",
            "--centroid-data", data, "--score-data", data, "--top-n", "6", "--out", str(out)]


def study_config(root: Path) -> Path:
    """A tiny study: one language, detection and similarity only (4 stages)."""
    config = {
        "model": str(root / "model_a"), "batch_size": 4, "langs": ["ja"], "top_n": 6, "stages": ["similarity"],
        "data": {"parallel": str(root / "pairs.jsonl")}, "controls": ["random:2", "anti"], "seeds": 2,
    }
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def error_line(capsys, code: int, *names: str) -> str:
    """Assert exit 2, no traceback and exactly one error line naming each of `names`; return that line."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command gets as far as loading a model or starting a study."""
    from transfer_neurons.cli import common, run

    monkeypatch.setattr(common, "load_model", lambda *a, **k: pytest.fail("the model loaded before the check"))
    monkeypatch.setattr(run, "run_study", lambda *a, **k: pytest.fail("the study started before the check"))


def make_read_only(folder: Path, monkeypatch) -> None:
    """chmod 555; where that does not stop writes (root), creating a file in the folder fails as the kernel would."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real = tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).resolve() == folder.resolve():
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A read-only folder (writable again at teardown, so it can be removed)."""
    folder = tmp_path / "read-only"
    make_read_only(folder, monkeypatch)
    yield folder
    folder.chmod(0o755)


def fill_disk(folder: Path, monkeypatch, after: int) -> None:
    """From the (after+1)-th temporary file under `folder` on, writes fail as on a full disk (/dev/full: ENOSPC)."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    real, calls = tempfile.mkstemp, []

    def mkstemp(*args, dir=None, **kwargs):
        fd, path = real(*args, dir=dir, **kwargs)
        inside = dir is not None and folder.resolve() in (Path(dir).resolve(), *Path(dir).resolve().parents)
        if inside:
            calls.append(path)
            if len(calls) > after:
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def files_under(folder: Path) -> list[str]:
    """Every file below folder, hidden ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---------------------------------------------------------------- unwritable outputs, missing inputs


@pytest.mark.parametrize("command", ["detect", "centroids", "ablate", "run"])
def test_out_that_is_a_file_is_refused_before_the_model_loads(tiny, tmp_path, capsys, no_model, command):
    out = tmp_path / "results"
    out.write_text("not a folder")
    args = {
        "detect": detect_args(tiny, out),
        "centroids": ["centroids", "--type", "type2", "--lang", "ja", "--model", str(tiny / "model_a"),
                      "--centroid-data", str(tiny / "pairs.jsonl"), "--out", str(out)],
        "ablate": ["ablate", "--detection", str(tiny / "det_a"), "--model", str(tiny / "model_a"),
                   "--data", str(tiny / "pairs.jsonl"), "--out", str(out)],
        "run": ["run", "--config", str(study_config(tiny)), "--out", str(out)],
    }[command]
    line = error_line(capsys, main(args), "--out", out)
    assert "is a file" in line
    assert out.read_text() == "not a folder"


def test_out_below_a_file_is_refused(tiny, tmp_path, capsys, no_model):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub" / "det"
    line = error_line(capsys, main(detect_args(tiny, out)), "--out", out)
    assert f"{blocker} is a file" in line


def test_output_file_below_a_file_or_that_is_a_folder_is_refused(tiny, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "neurons.json"
    error_line(capsys, main(["neurons", "export", str(tiny / "det_a"), "--out", str(out)]), "--out", out, f"{blocker} is a file")
    error_line(capsys, main(["neurons", "export", str(tiny / "det_a"), "--out", str(tmp_path)]), "--out", tmp_path, "is a folder")


def test_out_in_a_read_only_folder_is_refused(tiny, read_only, capsys, no_model):
    out = read_only / "det"
    line = error_line(capsys, main(detect_args(tiny, out)), "--out", out, read_only)
    assert "Permission denied" in line
    assert not out.exists()


@pytest.mark.parametrize("option", ["--centroid-data", "--score-data"])
def test_missing_data_file_is_refused_before_the_model_loads(tiny, tmp_path, capsys, no_model, option):
    args = detect_args(tiny, tmp_path / "det")
    missing = tmp_path / "nowhere.jsonl"
    args[args.index(option) + 1] = str(missing)
    error_line(capsys, main(args), option, missing, "no such file")
    assert not (tmp_path / "det").exists()


def test_specificity_reads_one_file_per_language_through_the_lang_field(tiny, tmp_path, capsys):
    """--data mono/{lang}.txt (the form --help shows) names one file per language of --langs."""
    mono = tmp_path / "mono"
    mono.mkdir()
    for lang, column in (("en", 0), ("ja", 1)):
        (mono / f"{lang}.txt").write_text("\n".join(row[column] for row in ROWS) + "\n", encoding="utf-8")
    args = ["specificity", "--detections", str(tiny / "det_a"), "--model", str(tiny / "model_a"), "--batch-size", "4",
            "--data", str(mono / "{lang}.txt"), "--per-lang", "4"]
    assert main([*args, "--langs", "en,ja", "--out", str(tmp_path / "sp")]) == 0
    assert (tmp_path / "sp/specificity.json").is_file()
    error_line(capsys, main([*args, "--langs", "en,ja,ko", "--out", str(tmp_path / "sp_ko")]),
               "--data", mono / "ko.txt", "no such file")
    assert not (tmp_path / "sp_ko").exists()


def test_missing_detection_and_config_are_refused(tiny, tmp_path, capsys, no_model):
    missing = tmp_path / "no-detection"
    error_line(capsys, main(["ablate", "--detection", str(missing), "--model", str(tiny / "model_a"),
                             "--out", str(tmp_path / "o")]), "--detection", missing)
    error_line(capsys, main(["run", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "s")]),
               "--config", tmp_path / "none.yaml")


def test_missing_data_in_a_study_config_is_refused_before_the_model_loads(tiny, tmp_path, capsys, no_model):
    config = yaml.safe_load(study_config(tiny).read_text())
    config["data"]["parallel"] = str(tmp_path / "gone.jsonl")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    error_line(capsys, main(["run", "--config", str(path), "--out", str(tmp_path / "s")]),
               "config.data.parallel", tmp_path / "gone.jsonl")
    assert not (tmp_path / "s").exists()


def test_a_study_language_the_data_lacks_is_refused_before_the_model_loads(tiny, tmp_path, capsys, no_model):
    line = error_line(capsys, main(["run", "--config", str(study_config(tiny)), "--langs", "ja,xx",
                                    "--out", str(tmp_path / "s")]), "--langs: ", "no 'xx' sentences", "it has en, ja")
    assert "'ja'" not in line and "config." not in line
    assert not (tmp_path / "s").exists()


def test_a_language_given_twice_is_refused(tiny, tmp_path, capsys, no_model):
    error_line(capsys, main(["run", "--config", str(study_config(tiny)), "--langs", "ja,ja", "--out", str(tmp_path / "s")]),
               "--langs: ja, ja names a language twice")


def test_read_only_study_folder_is_refused_before_the_model_loads(tiny, read_only, capsys, no_model):
    error_line(capsys, main(["run", "--config", str(study_config(tiny)), "--out", str(read_only)]), "--out", read_only)


# ---------------------------------------------------------------- device and model sources


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused_before_loading(tiny, tmp_path, capsys, no_model):
    error_line(capsys, main([*detect_args(tiny, tmp_path / "det"), "--device", "cuda"]), "--device cuda", "CUDA")
    error_line(capsys, main(["run", "--config", str(study_config(tiny)), "--device", "cuda", "--out", str(tmp_path / "s")]),
               "--device cuda")


def test_text_file_named_gguf_is_one_error_line(tiny, tmp_path, capsys, no_model):
    fake = tmp_path / "model.gguf"
    fake.write_text("hello\n")
    args = detect_args(tiny, tmp_path / "det")
    args[args.index("--model") + 1] = str(fake)
    error_line(capsys, main(args), "--model", fake, "not a GGUF file")


def test_unknown_model_answers_at_once_offline(tiny, tmp_path, capsys, monkeypatch, no_model):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = detect_args(tiny, tmp_path / "det")
    args[args.index("--model") + 1] = "no-such-model-xyz"
    start = time.perf_counter()
    code = main(args)
    assert time.perf_counter() - start < 2.0  # no hub retries: a local check only (generous for a busy CPU)
    error_line(capsys, code, "--model 'no-such-model-xyz'", "HF_HUB_OFFLINE")


# ---------------------------------------------------------------- a full disk


def test_full_disk_during_detect_names_the_file_and_leaves_nothing(tiny, tmp_path, capsys, monkeypatch):
    out = tmp_path / "det"
    fill_disk(out, monkeypatch, after=2)  # scores.npy and magnitudes.npy fit, centroids.npy does not
    line = error_line(capsys, main(detect_args(tiny, out)), out, "No space left on device")
    assert "centroids.npy" in line
    assert files_under(out) == [] and not out.exists()  # no partial detection, no temporary file


def test_full_disk_during_detect_keeps_an_earlier_detection_whole(tiny, tmp_path, capsys, monkeypatch):
    out = tmp_path / "det"
    assert main(detect_args(tiny, out)) == 0
    before = {name: (out / name).read_bytes() for name in files_under(out)}
    fill_disk(out, monkeypatch, after=1)
    error_line(capsys, main(detect_args(tiny, out, "model_b")), out, "No space left on device")
    assert {name: (out / name).read_bytes() for name in files_under(out)} == before


# ---------------------------------------------------------------- detections of another model


def test_detection_of_another_model_is_refused_naming_both(tiny, tmp_path, capsys):
    args = ["ablate", "--detection", str(tiny / "det_a"), "--model", str(tiny / "model_b"), "--batch-size", "4",
            "--data", str(tiny / "pairs.jsonl"), "--controls", "", "--out", str(tmp_path / "ablate")]
    line = error_line(capsys, main(args), "--detection", tiny / "det_a", (tiny / "model_a").resolve(),
                      (tiny / "model_b").resolve(), "--allow-model-mismatch")
    assert "same shape" in line
    assert not (tmp_path / "ablate").exists()
    assert main([*args, "--allow-model-mismatch"]) == 0
    assert (tmp_path / "ablate" / "ablate.json").is_file()


def test_a_neurons_file_of_another_model_is_refused(tiny, tmp_path, capsys):
    args = ["ablate", "--neurons", str(tiny / "det_a" / "neurons.json"), "--model", str(tiny / "model_b"),
            "--batch-size", "4", "--data", str(tiny / "pairs.jsonl"), "--lang", "ja", "--out", str(tmp_path / "ablate")]
    error_line(capsys, main(args), "--neurons", "was made on model", "other weights", "--allow-model-mismatch")
    assert main([*args, "--allow-model-mismatch"]) == 0


def test_centroids_of_another_model_or_hub_are_refused(tiny, tmp_path, capsys):
    data = str(tiny / "pairs.jsonl")
    assert main(["centroids", "--type", "type1", "--lang", "ja", "--model", str(tiny / "model_a"), "--batch-size", "4",
                 "--centroid-data", data, "--out", str(tmp_path / "cents")]) == 0
    detect = ["detect", "--type", "type1", "--lang", "ja", "--centroids", str(tmp_path / "cents"), "--score-data", data,
              "--top-n", "6", "--batch-size", "4"]
    error_line(capsys, main([*detect, "--model", str(tiny / "model_b"), "--out", str(tmp_path / "b")]),
               "--centroids", "was made on model", "--allow-model-mismatch")
    error_line(capsys, main([*detect, "--hub-lang", "de", "--model", str(tiny / "model_a"), "--out", str(tmp_path / "b")]),
               "computed from en–ja pairs", "not de–ja", "--hub-lang 'en'")
    assert not (tmp_path / "b").exists()
    assert main([*detect, "--model", str(tiny / "model_a"), "--out", str(tmp_path / "a")]) == 0  # the folder will do
    assert read_neurons(tmp_path / "a").tolist() == read_neurons(tiny / "det_a").tolist()


def test_detection_follows_its_model_to_another_folder(tiny, tmp_path):
    """The weights, not the path, decide: a copy of the model in another folder is the same model."""
    shutil.copytree(tiny / "model_a", tmp_path / "moved")
    assert main(["ablate", "--detection", str(tiny / "det_a"), "--model", str(tmp_path / "moved"), "--batch-size", "4",
                 "--data", str(tiny / "pairs.jsonl"), "--controls", "", "--out", str(tmp_path / "ablate")]) == 0


def test_commands_taking_detection_options_all_check_the_model(tiny, tmp_path, capsys):
    common = ["--model", str(tiny / "model_b"), "--batch-size", "4", "--out", str(tmp_path / "x")]
    for args in (["similarity", "--detection", str(tiny / "det_a"), "--data", str(tiny / "pairs.jsonl"), *common],
                 ["dose", "--detection", str(tiny / "det_a"), "--data", str(tiny / "pairs.jsonl"), *common],
                 ["specificity", "--detections", str(tiny / "det_a"), "--langs", "en,ja",
                  "--data", str(tiny / "pairs.jsonl"), *common]):
        error_line(capsys, main(args), "was made on model", "--allow-model-mismatch")
    assert not (tmp_path / "x").exists()


def test_detection_of_another_shape_is_refused_even_when_allowed(tiny, tmp_path, capsys):
    det = tmp_path / "det"
    det.mkdir()
    for path in (tiny / "det_a").iterdir():
        (det / path.name).write_bytes(path.read_bytes())
    meta = json.loads((det / "meta.json").read_text())
    (det / "meta.json").write_text(json.dumps({**meta, "num_layers": 6, "d_ff": 128}))
    args = ["ablate", "--detection", str(det), "--model", str(tiny / "model_a"), "--data", str(tiny / "pairs.jsonl"),
            "--controls", "", "--allow-model-mismatch", "--out", str(tmp_path / "o")]
    error_line(capsys, main(args), "num_layers 6 vs 4", "d_ff 128 vs 64")


def test_corrupt_meta_json_is_one_error_line(tiny, tmp_path, capsys):
    det = tmp_path / "det"
    det.mkdir()
    (det / "meta.json").write_text("{not json")
    args = ["ablate", "--detection", str(det), "--model", str(tiny / "model_a"), "--data", str(tiny / "pairs.jsonl"),
            "--out", str(tmp_path / "o")]
    error_line(capsys, main(args), det / "meta.json")


def test_meta_json_without_a_field_names_the_field(tiny, tmp_path, capsys):
    det = tmp_path / "det"
    shutil.copytree(tiny / "det_a", det)
    (det / "meta.json").write_text("{}")
    args = ["ablate", "--detection", str(det), "--model", str(tiny / "model_a"), "--data", str(tiny / "pairs.jsonl"),
            "--out", str(tmp_path / "o")]
    error_line(capsys, main(args), det / "meta.json", "no 'type' field")


# ---------------------------------------------------------------- options a command cannot use, before the model loads


@pytest.mark.parametrize("command, detection", [("similarity", "--detection"), ("ablate", "--detection"),
                                                ("latent", "--detections")])
def test_a_bad_control_spec_is_a_usage_error_naming_controls(tiny, tmp_path, capsys, command, detection, no_model):
    with pytest.raises(SystemExit) as stop:
        main([command, detection, str(tiny / "det_a"), "--model", str(tiny / "model_a"), "--controls", "random,bogus",
              "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --controls: control spec 'bogus'" in err and "Traceback" not in err


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_out_of_range_is_a_usage_error(tiny, tmp_path, capsys, seed, no_model):
    with pytest.raises(SystemExit) as stop:
        main(["latent", "--detections", str(tiny / "det_a"), "--model", str(tiny / "model_a"), "--seed", seed,
              "--out", str(tmp_path / "o")])
    assert stop.value.code == 2 and "argument --seed: expected an integer from 0 to 4294967295" in capsys.readouterr().err


@pytest.mark.parametrize("command, detection", [("alignment", "--detection"), ("latent", "--detections")])
def test_fewer_than_ten_bootstrap_resamples_are_a_usage_error(tiny, tmp_path, capsys, command, detection, no_model):
    with pytest.raises(SystemExit) as stop:
        main([command, detection, str(tiny / "det_a"), "--n-boot", "1", "--out", str(tmp_path / "o")])
    assert stop.value.code == 2 and "argument --n-boot: expected at least 10 resamples" in capsys.readouterr().err


def test_one_pair_is_refused_naming_the_option(tiny, tmp_path, capsys, no_model):
    args = ["ablate", "--detection", str(tiny / "det_a"), "--model", str(tiny / "model_a"), "--data",
            str(tiny / "pairs.jsonl"), "--pairs", "1", "--out", str(tmp_path / "o")]
    error_line(capsys, main(args), "--pairs/--limit 1", "needs at least 2")


def test_one_sentence_per_language_is_refused_naming_the_option(tiny, tmp_path, capsys, no_model):
    args = ["specificity", "--detections", str(tiny / "det_a"), "--langs", "en,ja", "--model", str(tiny / "model_a"),
            "--data", str(tiny / "pairs.jsonl"), "--per-lang", "1", "--out", str(tmp_path / "o")]
    error_line(capsys, main(args), "--per-lang 1", "at least 2 per language")


def test_dose_counts_that_all_exceed_the_candidates_name_the_option(tiny, tmp_path, capsys, no_model):
    args = ["dose", "--detection", str(tiny / "det_a"), "--model", str(tiny / "model_a"), "--data",
            str(tiny / "pairs.jsonl"), "--counts", "5000,9000", "--out", str(tmp_path / "o")]
    error_line(capsys, main(args), "--counts: 5000,9000 all exceed", "at most")


# ---------------------------------------------------------------- oversized inputs and options


def test_oversized_sentences_are_truncated_with_a_warning(tiny, tmp_path, capsys):
    """A 200 kB line and a sentence past GPT-2's n_positions (128): cut to the context, counted in one warning."""
    sentences = ["A short sentence.", "x" * 200_000, "word " * 300, "Another short one."]
    data = tmp_path / "ja.txt"
    data.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    out = tmp_path / "det"
    code = main(["detect", "--type", "type2", "--lang", "ja", "--model", str(tiny / "gpt2"), "--batch-size", "4",
                 "--centroid-data", str(data), "--score-data", str(data), "--top-n", "6", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert "longer than 128 tokens" in err and "2 of 4 sentence(s)" in err
    assert np.isfinite(np.load(out / "scores.npy")).all()


def test_oversized_top_n_is_clamped_with_a_warning(tiny, tmp_path, capsys):
    args = detect_args(tiny, tmp_path / "det")
    args[args.index("--top-n") + 1] = "100000"
    assert main(args) == 0
    err = capsys.readouterr().err
    meta = json.loads((tmp_path / "det" / "meta.json").read_text())
    candidates = len(meta["candidate_layers"]) * meta["d_ff"]
    assert f"--top-n 100000 is more than the {candidates} candidate neurons" in err
    assert meta["top_n"] == candidates and len(read_neurons(tmp_path / "det")) == candidates


# ---------------------------------------------------------------- the study: busy folder, config errors, disk full, kill -9


def test_second_run_on_a_busy_study_folder_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    with open(out / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        error_line(capsys, main(["run", "--config", str(study_config(tiny)), "--out", str(out)]), out, "another")


def test_model_that_does_not_load_stops_the_study_at_once(tiny, tmp_path, capsys):
    """A model folder without weights: one error line, not one failure per stage."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny / "model_a", broken, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    config = {**yaml.safe_load(study_config(tiny).read_text()), "model": str(broken)}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    error_line(capsys, main(["run", "--config", str(path), "--out", str(tmp_path / "s")]), broken, "could not be loaded")
    assert not list((tmp_path / "s").rglob("manifest.json")) and not (tmp_path / "s" / "errors").exists()


def test_config_error_names_its_key(tmp_path, capsys, no_model):
    path = tmp_path / "bad.yaml"
    path.write_text("seeds: -3\n")
    error_line(capsys, main(["run", "--config", str(path), "--out", str(tmp_path / "s")]), "config.seeds")
    path.write_text("stages: [bogus]\n")
    error_line(capsys, main(["run", "--config", str(path), "--out", str(tmp_path / "s")]), "config.stages: ")
    line = error_line(capsys, main(["run", "--config", str(path), "--stages", "similarity,bogus",
                                    "--out", str(tmp_path / "s")]), "--stages: unknown stage 'bogus'")
    assert "config." not in line  # the user typed a flag: the error names it


@pytest.fixture(scope="module")
def reference_study(tiny):
    """The tiny study run once without interruption."""
    out = tiny / "reference"
    assert main(["run", "--config", str(study_config(tiny)), "--out", str(out)]) == 0
    return out


def _same(a, b, where: str) -> None:
    """Two JSON values equal: floats within REL/ABS, timings ignored."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            if "second" not in key and key not in ("finished", "versions"):
                _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=REL, abs_tol=ABS) or (math.isnan(a) and math.isnan(b)), (where, a, b)
    else:
        assert a == b, (where, a, b)


def _cell(text: str):
    """A CSV cell as a float when it is one."""
    try:
        return float(text)
    except ValueError:
        return text


def assert_same_study(reference: Path, other: Path) -> None:
    """Every stage of `other` finished with the reference's key and numbers (within float tolerance)."""
    assert not [p for p in other.rglob("*") if ".tmp-" in p.name or ".old-" in p.name or ".staged-" in p.name]
    manifests = sorted(p.relative_to(reference) for p in reference.rglob("manifest.json"))
    assert manifests and manifests == sorted(p.relative_to(other) for p in other.rglob("manifest.json"))
    for manifest in manifests:
        stage_a, stage_b = (reference / manifest).parent, (other / manifest).parent
        ma, mb = (json.loads((s / "manifest.json").read_text()) for s in (stage_a, stage_b))
        assert ma["key"] == mb["key"] and ma["files"] == mb["files"], manifest
        _same(ma["summary"], mb["summary"], f"{manifest}:summary")
        for name in ma["files"]:
            a, b = stage_a / name, stage_b / name
            if name.endswith(".npy"):
                np.testing.assert_allclose(np.load(b), np.load(a), rtol=REL, atol=ABS, err_msg=name)
            elif name.endswith(".csv"):
                rows_a, rows_b = (list(csv.reader(p.open(encoding="utf-8"))) for p in (a, b))
                _same([[_cell(c) for c in r] for r in rows_a], [[_cell(c) for c in r] for r in rows_b], name)
            elif name.endswith(".json") and name != "manifest.json":
                text_a = a.read_text(encoding="utf-8").replace(str(reference), "STUDY")
                text_b = b.read_text(encoding="utf-8").replace(str(other), "STUDY")
                _same(json.loads(text_a), json.loads(text_b), name)
    assert (other / "report.html").is_file() and (other / "results.json").is_file()


def test_full_disk_during_a_study_stops_it_and_a_rerun_completes(tiny, reference_study, tmp_path, capsys, monkeypatch):
    out = tmp_path / "study"
    fill_disk(out, monkeypatch, after=9)  # config.yaml, plan.json, the first detection (6 files) fit; the next does not
    error_line(capsys, main(["run", "--config", str(study_config(tiny)), "--out", str(out)]), out, "No space left on device")
    assert len(list(out.rglob("manifest.json"))) == 1  # the finished stage is kept, nothing half-written
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or ".staged-" in p.name]
    monkeypatch.undo()  # space again
    assert main(["run", "--config", str(study_config(tiny)), "--out", str(out)]) == 0
    assert_same_study(reference_study, out)


def _kill_when(argv: list[str], ready, timeout: float = 300.0) -> None:
    """Start `transfer-neurons` with argv and kill -9 it as soon as ready() holds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "transfer_neurons.cli", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before the kill point: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the kill point was never reached")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_kill_9_at_several_points_then_resume_gives_the_uninterrupted_results(tiny, reference_study, tmp_path):
    out = tmp_path / "study"
    argv = ["run", "--config", str(study_config(tiny)), "--out", str(out)]

    def finished() -> int:
        """Installed stages. The run is live, so a temp folder may be renamed away mid-walk: os.walk skips it."""
        return sum("manifest.json" in files and ".tmp-" not in Path(folder).name for folder, _, files in os.walk(out))

    def computing(kind: str) -> bool:
        return any((out / kind).glob(".*.tmp-*")) if (out / kind).is_dir() else False

    _kill_when(argv, lambda: computing("detect"))  # inside the first detection
    assert finished() == 0
    _kill_when(argv, lambda: finished() >= 1)  # right after a stage was installed
    _kill_when(argv, lambda: computing("similarity"))  # inside an analysis
    assert 2 <= finished() < 4
    assert main(argv) == 0  # the resume (in this process: one interpreter start less)
    assert_same_study(reference_study, out)
