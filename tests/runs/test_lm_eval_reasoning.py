"""Reasoning under the paper's protocol: lm-eval's 5-shot generation task when it can be built, else the built-in,
with summary rows the reasoning claim decides either way; the `reasoning` command makes the same choice."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from lm_eval_tasks import QUESTIONS, write_prox_tasks
from tiny import save_model, tiny_lm

from transfer_neurons.cli import main
from transfer_neurons.conditions import build_conditions
from transfer_neurons.data import MCItem, MCSet
from transfer_neurons.detection import Detection, write_detection
from transfer_neurons.report.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, question_claim
from transfer_neurons.runs.qa import QuestionInputs
from transfer_neurons.runs.reasoning import PaperReasoning, run_lm_eval_reasoning
from transfer_neurons.scoring import rank_neurons

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
lm_eval = pytest.importorskip("lm_eval")

ITEMS = (MCItem("2 + 2 = ?", ("4", "5", "22"), 0), MCItem("Which is a fruit?", ("Carrot", "Apple"), 1))
DECIDED = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)


def detection(lang: str = "ja") -> Detection:
    """Type-1 neurons of a tiny 4-layer, 64-neuron model: the top 12 of random scores in layers 0-2."""
    scores = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    return Detection("type1", lang, scores, np.abs(scores), np.zeros((4, 32), np.float32), (0, 1, 2),
                     rank_neurons(scores, (0, 1, 2), 12), {"type": "type1", "language": lang, "candidate_layers": [0, 1, 2]})


def question_inputs(lang: str = "ja") -> QuestionInputs:
    det = detection(lang)
    conditions = build_conditions(det, ["random", "magnitude-matched"], seeds=2)
    return QuestionInputs(tiny_lm("llama"), det, conditions, [MCSet("mc", lang, ITEMS)], batch_size=4, detection="det")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    return write_prox_tasks(tmp_path_factory.mktemp("tasks"), ("ja",))


def test_paper_protocol_runs_the_lm_eval_task_and_writes_rows_the_claim_decides(tasks, tmp_path):
    paper = PaperReasoning("tiny_prox_{lang}", str(tasks), include_defaults=False)
    summary = run_lm_eval_reasoning(question_inputs(), tmp_path, paper)
    data = summary.data
    n = sum(len(rows) for rows in QUESTIONS.values())
    assert data["protocols"] == {"ja": "lm-eval"} and data["claim_metric"] == "exact_match" and data["items"] == n
    assert data["claim_source"] == "lm-eval tiny_prox_ja (5-shot, exact_match after custom-extract)"
    rows = {r["condition"]: r for r in data["rows"]}
    assert set(rows) == {"none", "transfer", "random", "magnitude-matched"}
    assert all(r["metric"] == "exact_match" and r["items"] == n and r["lang"] == "ja" for r in rows.values())
    assert rows["random"]["seeds"] == 2 and rows["random"]["tmc_low"] <= rows["random"]["transfer_minus_control"]
    record = json.loads((tmp_path / "reasoning.json").read_text())["languages"]["ja"]
    assert record["protocol"] == "lm-eval" and record["n_shot"]["tiny_prox_ja_a"] == 5 and record["filter"] == "custom-extract"
    assert "not the generated tokens" in record["deactivated"]
    items = list(csv.DictReader((tmp_path / "reasoning_lm_eval_items.csv").open(encoding="utf-8")))
    assert len(items) == n * 5  # none, transfer, 2 random seeds, magnitude-matched
    assert {r["target"] for r in items} == {a for rows in QUESTIONS.values() for _, a in rows}
    for label in ("none", "transfer", "random#1", "magnitude-matched"):  # lm-eval's own output per condition
        assert (tmp_path / "lm-eval" / "ja" / label / "samples_tiny_prox_ja_b.jsonl").is_file()
    verdict = question_claim({"reasoning/type1-ja": summary.record()}, ["ja"], "reasoning", "acc")
    assert verdict.status in DECIDED and verdict.units == ["ja"]
    assert "lm-eval tiny_prox_ja" in verdict.statistic and "vs magnitude-matched" in verdict.statistic


def test_paper_limit_caps_questions_per_subject(tasks, tmp_path):
    summary = run_lm_eval_reasoning(question_inputs(), tmp_path, PaperReasoning("tiny_prox_{lang}", str(tasks), 2, False))
    assert summary.data["items"] == 2 * len(QUESTIONS)  # lm-eval's limit counts per task of a group


def test_unknown_task_runs_the_built_in_and_says_why(tasks, tmp_path):
    paper = PaperReasoning("nonexistent_{lang}", str(tasks), include_defaults=False)
    summary = run_lm_eval_reasoning(question_inputs(), tmp_path, paper)
    why = f"lm-eval knows no task nonexistent_ja (searched also {tasks})"
    assert summary.data["protocols"] == {"ja": "built-in"} and summary.data["claim_metric"] == "acc"
    assert summary.data["claim_source"] == f"built-in multiple choice (option log-likelihood), because {why}"
    assert why in summary.title
    record = json.loads((tmp_path / "reasoning.json").read_text())
    assert record["languages"]["ja"]["why_built_in"] == why and record["protocols"] == [
        f"ja: built-in multiple choice (option log-likelihood), because {why}"]
    assert (tmp_path / "reasoning_items.csv").is_file() and not (tmp_path / "lm-eval").exists()
    assert {r["metric"] for r in summary.data["rows"]} == {"acc", "acc_norm", "p_correct"}
    verdict = question_claim({"reasoning/type1-ja": summary.record()}, ["ja"], "reasoning", "acc")
    assert verdict.status in DECIDED and verdict.statistic.startswith("ja: built-in multiple choice")


def test_a_language_without_a_configured_task_runs_the_built_in(tasks, tmp_path):
    inputs = question_inputs()
    inputs.sets.append(MCSet("mc", "ko", ITEMS))
    summary = run_lm_eval_reasoning(inputs, tmp_path, PaperReasoning({"ja": "tiny_prox_ja"}, str(tasks), 1, False))
    assert summary.data["protocols"] == {"ja": "lm-eval", "ko": "built-in"}
    assert "claim_metric" not in summary.data  # two metrics: each language's stage decides its own
    assert "ko: built-in multiple choice (option log-likelihood), because no lm-eval task configured for ko" in summary.text
    assert {(r["lang"], r["metric"]) for r in summary.data["rows"]} == {
        ("ja", "exact_match"), *(("ko", m) for m in ("acc", "acc_norm", "p_correct"))}


def test_cli_reasoning_protocol_paper(tasks, tmp_path, capsys):
    save_model(tiny_lm("llama"), tmp_path / "model")
    write_detection(detection(), tmp_path / "det")
    rows = [{"question": {"ja": item.question, "nl": item.question}, "options": {"ja": list(item.options),
             "nl": list(item.options)}, "answer": item.answer} for item in ITEMS]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    common = ["reasoning", "--model", str(tmp_path / "model"), "--detection", str(tmp_path / "det"), "--data",
              str(tmp_path / "mc.jsonl"), "--controls", "random:1", "--protocol", "paper"]
    code = main([*common, "--langs", "ja,nl", "--lm-eval-task", "tiny_prox_{lang}", "--include-path", str(tasks),
                 "--limit", "1", "--out", str(tmp_path / "out")])
    assert code == 0
    record = json.loads((tmp_path / "out" / "reasoning.json").read_text())
    assert record["languages"]["ja"]["protocol"] == "lm-eval" and record["languages"]["ja"]["items"] == len(QUESTIONS)
    assert record["languages"]["nl"]["why_built_in"].startswith("lm-eval knows no task tiny_prox_nl")
    assert "ja: lm-eval tiny_prox_ja (5-shot" in capsys.readouterr().out
    assert main([*common, "--lm-eval-task", "prox_{language}", "--out", str(tmp_path / "bad")]) == 2
    assert "--lm-eval-task: 'prox_{language}' may hold {lang} and no other braces" in capsys.readouterr().err
