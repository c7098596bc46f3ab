"""`ablate` end to end on a tiny saved model: detect, then the compact table, files and errors."""

import json

import numpy as np
import pytest
from tiny import save_model, tiny_lm, write_jsonl

from transfer_neurons.cli import main

ROWS = [
    {"en": "The cat sleeps.", "ja": "猫が寝ている。"},
    {"en": "I like green tea.", "ja": "緑茶が好きです。"},
    {"en": "Where is the station?", "ja": "駅はどこですか。"},
    {"en": "It is raining today.", "ja": "今日は雨が降っています。"},
    {"en": "My brother is a doctor.", "ja": "兄は医者です。"},
    {"en": "The shop opens at nine.", "ja": "店は九時に開きます。"},
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    lm = tiny_lm("llama")
    save_model(lm, root / "model")
    data = root / "pairs.jsonl"
    write_jsonl(data, ROWS)
    model = ["--model", str(root / "model"), "--batch-size", "4"]
    assert main(["detect", "--type", "type1", "--lang", "ja", *model, "--centroid-data", str(data),
                 "--score-data", str(data), "--top-n", "6", "--out", str(root / "det")]) == 0
    return root, [*model, "--data", str(data)]


def test_ablate_writes_table_files_and_prints_it(setup, capsys):
    root, common = setup
    capsys.readouterr()
    code = main(["ablate", "--detection", str(root / "det"), *common, "--controls", "random:2,magnitude-matched,anti",
                 "--out", str(root / "out")])
    assert code == 0
    for name in ("ablate.csv", "ablate.json", "ablate.png"):
        assert (root / "out" / name).stat().st_size > 0
    record = json.loads((root / "out/ablate.json").read_text())
    rows = record["rows"]
    assert {r["metric"] for r in rows} == {"raw", "centred"} and {r["pairs"] for r in rows} == {"parallel"}
    assert [r["condition"] for r in rows if r["metric"] == "raw"] == ["none", "transfer", "random", "magnitude-matched", "anti"]
    assert record["mid_layers"] == [2] and record["pairs"] == len(ROWS) and record["lang"] == "ja"
    random = next(r for r in rows if r["condition"] == "random")
    assert random["seeds"] == 2 and random["tmc_low"] <= random["transfer_minus_control"] <= random["tmc_high"]
    assert all(r["drop"] == 0 for r in rows if r["condition"] == "none")
    assert "magnitude_ratio=" in next(r for r in rows if r["condition"] == "magnitude-matched")["note"]
    out = capsys.readouterr().out
    assert "mean-centred cosine, parallel pairs" in out and "magnitude-matched neurons reach" in out


def test_bare_neurons_json_with_top_k_needs_no_controls(setup):
    root, common = setup
    assert main(["ablate", "--neurons", str(root / "det/neurons.json"), "--top-k", "2", "--lang", "ja", *common,
                 "--out", str(root / "bare")]) == 0
    record = json.loads((root / "bare/ablate.json").read_text())
    assert [c["label"] for c in record["conditions"]] == ["none", "transfer"]
    assert record["conditions"][1]["neurons"] == 2


def test_bad_inputs_exit_2_naming_the_problem(setup, capsys):
    root, common = setup
    missing = root / "nowhere" / "neurons.json"
    assert main(["ablate", "--neurons", str(missing), "--lang", "ja", *common, "--out", str(root / "x")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["ablate", "--neurons", str(root / "det/neurons.json"), "--controls", "random", "--lang", "ja",
                 *common, "--out", str(root / "y")]) == 2
    assert "--detection" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["similarity", "activations"])
def test_similarity_and_activations_commands_write_their_files(setup, command):
    root, common = setup
    out = root / command
    assert main([command, "--detection", str(root / "det"), *common, "--controls", "random:2,anti", "--out", str(out)]) == 0
    record = json.loads((out / f"{command}.json").read_text())
    assert {(r["metric"], r["pairs"]) for r in record["mid"]} == {
        (m, k) for m in ("raw", "centred") for k in ("parallel", "nonparallel", "gap")}
    labels = ["none", "transfer", "random#0", "random#1", "anti"]
    assert record["values_npy"]["condition"] == labels
    assert np.load(out / f"{command}_values.npy").shape == (6, len(labels), len(ROWS), 4)
    for name in (f"{command}.csv", f"{command}_mid.csv", f"{command}_layers.png", f"{command}_mid_drop.png"):
        assert (out / name).stat().st_size > 0


def test_neurons_folder_of_another_model_is_refused_unless_allowed(setup, tmp_path, capsys):
    """A detection folder given as --neurons is checked against --model like --detection; a bare neurons.json cannot be."""
    root, common = setup
    save_model(tiny_lm("llama", seed=1), tmp_path / "other")
    other = [*common, "--model", str(tmp_path / "other")]  # the later --model wins
    args = ["ablate", "--neurons", str(root / "det"), "--top-k", "2", "--lang", "ja", *other, "--out", str(tmp_path / "a")]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--neurons {root / 'det'} was made on model" in err and "--allow-model-mismatch" in err
    assert not (tmp_path / "a").exists()
    assert main([*args, "--allow-model-mismatch"]) == 0
