"""lm-eval bridge: clear error without the extra, results table parsing, and a tiny local task end to end."""

import json
import sys

import numpy as np
import pytest
from tiny import save_model, tiny_lm

from transfer_neurons.analyses.lm_eval_bridge import require_lm_eval, result_rows, run_lm_eval
from transfer_neurons.conditions import Condition
from transfer_neurons.errors import TransferNeuronsError

ALL_NEURONS = np.array([(layer, i) for layer in range(4) for i in range(64)])
DOCS = [
    {"question": "The cat", "choices": ["sleeps", "flies", "sings"], "answer": 0},
    {"question": "The sky is", "choices": ["blue", "loud"], "answer": 0},
    {"question": "Two plus two is", "choices": ["three", "four"], "answer": 1},
    {"question": "Water is", "choices": ["wet", "dry"], "answer": 0},
]


def test_missing_lm_eval_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # makes `import lm_eval` raise ImportError
    with pytest.raises(TransferNeuronsError, match=r"extra `lm-eval`.*transfer-neurons\[lm-eval\]"):
        require_lm_eval()


def test_result_rows_read_metric_filter_keys_and_stderr():
    results = {"results": {
        "task_a": {"alias": "task_a", "acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.75,
                   "acc_norm_stderr,none": "N/A", "sample_len": 4},
        "task_b": {"exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": 0.05},
    }}
    rows = result_rows(results, Condition("random", np.zeros((3, 2), int), seed=2))
    assert [(r["task"], r["metric"], r["filter"], r["value"], r["stderr"]) for r in rows] == [
        ("task_a", "acc", "none", 0.5, 0.1),
        ("task_a", "acc_norm", "none", 0.75, None),
        ("task_b", "exact_match", "strict-match", 0.25, 0.05),
    ]
    assert all(r["condition"] == "random" and r["seed"] == 2 and r["label"] == "random#2" and r["neurons"] == 3
               for r in rows)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """Two tiny lm-eval tasks over a local JSONL file: multiple choice and plain log-likelihood."""
    pytest.importorskip("lm_eval")
    root = tmp_path_factory.mktemp("tasks")
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (root / "tiny_mc.yaml").write_text(
        "task: tiny_mc\n" + common + "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: answer\nmetric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n", encoding="utf-8")
    (root / "tiny_ll.yaml").write_text(
        "task: tiny_ll\n" + common + "output_type: loglikelihood\ndoc_to_text: '{{question}}'\n"
        "doc_to_target: '{{choices[answer]}}'\nmetric_list:\n"
        "  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n", encoding="utf-8")
    return root


def test_tiny_tasks_under_deactivation(task_dir):
    lm = tiny_lm("llama")
    conditions = [Condition("none", None), Condition("empty", np.zeros((0, 2), np.int64)),
                  Condition("transfer", ALL_NEURONS)]
    rows = run_lm_eval(lm, ["tiny_mc", "tiny_ll"], conditions, batch_size=2, include_path=str(task_dir),
                       include_defaults=False)
    value = {(r["task"], r["metric"], r["label"]): r for r in rows}
    assert set(value) == {(t, m, c) for t, m in (("tiny_mc", "acc"), ("tiny_ll", "perplexity"))
                          for c in ("none", "empty", "transfer")}
    assert value["tiny_mc", "acc", "none"]["stderr"] is not None
    assert 0.0 <= value["tiny_mc", "acc", "none"]["value"] <= 1.0
    # an empty neuron set leaves the model as it is; zeroing every neuron changes the log-likelihoods
    assert value["tiny_ll", "perplexity", "empty"]["value"] == pytest.approx(value["tiny_ll", "perplexity", "none"]["value"])
    assert value["tiny_ll", "perplexity", "transfer"]["value"] != pytest.approx(value["tiny_ll", "perplexity", "none"]["value"])
    # the hooks are gone afterwards: a plain rerun gives the plain value again
    again = run_lm_eval(lm, ["tiny_ll"], conditions[:1], batch_size=2, include_path=str(task_dir), include_defaults=False)
    assert again[0]["value"] == pytest.approx(value["tiny_ll", "perplexity", "none"]["value"])


def test_unknown_task_is_a_clear_error(task_dir):
    lm = tiny_lm("llama")
    with pytest.raises(TransferNeuronsError, match="no task nonexistent_task"):
        run_lm_eval(lm, ["nonexistent_task"], [Condition("none", None)], include_path=str(task_dir),
                    include_defaults=False)


def test_cli_lm_eval_writes_one_table(task_dir, tmp_path):
    import csv

    from transfer_neurons.cli import main
    from transfer_neurons.detection import Detection, write_detection

    model = tiny_lm("llama")
    save_model(model, tmp_path / "model")
    scores = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    det = Detection("type1", "en", scores, np.abs(scores), np.zeros((4, 32), np.float32), (0, 1, 2),
                    np.array([[0, 1], [1, 5], [2, 7]]), {"type": "type1", "language": "en", "candidate_layers": [0, 1, 2]})
    write_detection(det, tmp_path / "det")
    out = tmp_path / "out"
    code = main(["lm-eval", "--model", str(tmp_path / "model"), "--detection", str(tmp_path / "det"), "--tasks",
                 "tiny_mc", "--include-path", str(task_dir), "--only-included", "--controls", "anti", "--limit", "3",
                 "--batch-size", "2", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader((out / "lm_eval.csv").open(encoding="utf-8")))
    assert [(r["task"], r["metric"], r["condition"]) for r in rows] == [
        ("tiny_mc", "acc", c) for c in ("none", "transfer", "anti")]
    assert (out / "lm_eval.png").is_file() and json.loads((out / "lm_eval.json").read_text())["limit"] == 3
