"""--intervention reaches the model from every command that deactivates, and is refused where it cannot apply."""

import json

import pytest
from tiny import save_model, tiny_lm, write_jsonl

from transfer_neurons.cli import main

ROWS = [
    {"en": "The cat sleeps.", "ja": "猫が寝ている。"},
    {"en": "I like green tea.", "ja": "緑茶が好きです。"},
    {"en": "Where is the station?", "ja": "駅はどこですか。"},
    {"en": "It is raining today.", "ja": "今日は雨が降っています。"},
    {"en": "My brother is a doctor.", "ja": "兄は医者です。"},
]
QA = [{"question": {"ja": "日本の首都は?", "en": "Capital of Japan?"}, "answers": {"ja": ["東京"], "en": ["Tokyo"]}}]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("intervene")
    save_model(tiny_lm("llama"), root / "model")
    data = write_jsonl(root / "pairs.jsonl", ROWS)
    model = ["--model", str(root / "model"), "--batch-size", "2"]
    assert main(["detect", "--type", "type1", "--lang", "ja", *model, "--centroid-data", str(data),
                 "--score-data", str(data), "--top-n", "6", "--out", str(root / "det")]) == 0
    return root, [*model, "--data", str(data)]


def ablate(root, common, name, *extra):
    assert main(["ablate", "--detection", str(root / "det"), *common, "--controls", "", "--out", str(root / name),
                 *extra]) == 0
    record = json.loads((root / name / "ablate.json").read_text())
    return record, {(r["metric"], r["condition"]): r for r in record["rows"]}


def test_ablate_scale_one_changes_nothing_and_others_do(setup):
    root, common = setup
    record, one = ablate(root, common, "one", "--intervention", "scale:1")
    assert record["intervention"] == "scale:1" and one[("raw", "transfer")]["drop"] == 0.0
    drops = {}
    for spec in ("zero", "scale:2", "mean", "patch"):
        record, rows = ablate(root, common, spec.replace(":", "_"), "--intervention", spec)
        assert record["intervention"] == spec
        drops[spec] = rows[("raw", "transfer")]["drop"]
        assert rows[("raw", "none")]["drop"] == 0.0
    assert all(drop != 0.0 for drop in drops.values()) and len(set(drops.values())) == 4


def test_similarity_with_patch_runs(setup):
    root, common = setup
    assert main(["similarity", "--detection", str(root / "det"), *common, "--controls", "", "--intervention", "patch",
                 "--out", str(root / "sim")]) == 0
    assert json.loads((root / "sim" / "similarity.json").read_text())["intervention"] == "patch"  # on record


def test_qa_refuses_patch_which_needs_parallel_pairs(setup, tmp_path, capsys):
    root, common = setup
    qa = write_jsonl(tmp_path / "qa.jsonl", QA)
    code = main(["qa", "--detection", str(root / "det"), *common[:4], "--data", str(qa), "--langs", "ja",
                 "--controls", "", "--intervention", "patch", "--out", str(tmp_path / "qa")])
    assert code == 2 and "--intervention patch needs parallel pairs" in capsys.readouterr().err


def test_malformed_spec_is_an_argparse_error(setup, capsys):
    root, common = setup
    with pytest.raises(SystemExit) as exit_:
        main(["ablate", "--detection", str(root / "det"), *common, "--intervention", "scale:x", "--out", "x"])
    assert exit_.value.code == 2 and "argument --intervention: intervention 'scale:x'" in capsys.readouterr().err
