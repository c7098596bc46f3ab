"""Generation-based QA: left padding, deactivation around generate, scoring, summary rows, CLI smoke."""

import csv
import json

import numpy as np
import pytest
import torch
from tiny import save_model, tiny_lm, write_jsonl

from transfer_neurons.analyses.qa import (
    NEUTRAL_PROMPT,
    QAResult,
    StopAtNewline,
    first_line,
    generate_answers,
    qa_prompt,
    qa_summary,
    run_qa,
    score_answers,
)
from transfer_neurons.cli import main
from transfer_neurons.conditions import Condition
from transfer_neurons.data import QAItem, QASet
from transfer_neurons.detection import Detection, write_detection
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.scoring import rank_neurons

PROMPTS = ("Q: a?\nA:", "Q: what is the much longer question here?\nA:", "Q: xyz\nA:", "Q: 猫は?\nA:")
ALL_NEURONS = np.array([(layer, i) for layer in range(4) for i in range(64)])  # every neuron of the tiny models


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama", padding_side="right")


def test_empty_neuron_set_changes_nothing_and_all_neurons_change_answers(lm):
    plain = generate_answers(lm, PROMPTS, None, progress=None)
    empty = generate_answers(lm, PROMPTS, np.zeros((0, 2), dtype=np.int64), progress=None)
    zeroed = generate_answers(lm, PROMPTS, ALL_NEURONS, mode="all", progress=None)
    last_only = generate_answers(lm, PROMPTS, ALL_NEURONS, mode="prompt_last", progress=None)
    assert empty == plain
    assert zeroed != plain
    assert last_only != plain and last_only != zeroed
    assert generate_answers(lm, PROMPTS, None, progress=None) == plain  # hooks were removed


def test_left_padding_is_used_for_generation_and_restored(lm, monkeypatch):
    seen = []
    real_generate = lm.model.generate

    def spy(**kwargs):
        seen.append((lm.tokenizer.padding_side, kwargs["attention_mask"].clone()))
        return real_generate(**kwargs)

    monkeypatch.setattr(lm.model, "generate", spy)
    generate_answers(lm, PROMPTS, None, batch_size=4, progress=None)
    side, mask = seen[0]
    assert side == "left"
    assert mask[:, -1].all() and not mask[:, 0].all()  # padding sits on the left of the shorter prompts
    assert lm.tokenizer.padding_side == "right"


def test_batched_answers_equal_one_by_one(lm):
    batched = generate_answers(lm, PROMPTS, None, batch_size=4, progress=None)
    single = generate_answers(lm, PROMPTS, None, batch_size=1, progress=None)
    assert batched == single


def test_padding_side_is_restored_after_an_error(lm):
    with pytest.raises(TransferNeuronsError):
        generate_answers(lm, PROMPTS, np.array([[9, 0]]), progress=None)  # layer 9 does not exist
    assert lm.tokenizer.padding_side == "right"


def test_unknown_mode_is_refused(lm):
    with pytest.raises(TransferNeuronsError, match="mode"):
        generate_answers(lm, PROMPTS, None, mode="last", progress=None)


def test_stop_at_newline_and_first_line():
    class Decoder:
        def batch_decode(self, ids, skip_special_tokens=True):
            return ["\nParis", " Paris\nQ", "Rome"][: len(ids)]

    stop = StopAtNewline(Decoder(), prompt_length=1)
    done = stop(torch.zeros(3, 4, dtype=torch.long), None)
    assert done.tolist() == [False, True, False]  # a leading newline does not stop the answer
    assert first_line("\n  Paris \nQuestion: x") == "Paris"
    assert first_line("  \n") == ""


def test_prompt_templates():
    assert qa_prompt("Wie?", "de") == "Antworte kurz.\nFrage: Wie?\nAntwort:"
    assert qa_prompt("誰？", "ja").endswith("質問：誰？\n答え：")
    assert qa_prompt("Kdo?", "cs") == NEUTRAL_PROMPT.format(question="Kdo?")


def test_score_answers_max_over_aliases():
    items = (QAItem("q1", ("Tokio", "Tokyo")), QAItem("q2", ("Paris, France",)), QAItem("q3", ("Louvre Museum",)))
    f1, em = score_answers(["tokyo", "Paris is the capital", "the Louvre"], items, "en")
    np.testing.assert_allclose(f1, [1.0, 0.4, 2 / 3])  # [louvre] vs [louvre, museum]: P 1, R 1/2
    np.testing.assert_array_equal(em, [1.0, 0.0, 0.0])
    f1, em = score_answers(["東京です"], (QAItem("q", ("とうきょう", "東京")),), "ja")
    assert f1[0] == pytest.approx(2 / 3) and em[0] == 0.0


def test_summary_rows_have_one_all_layer_and_hand_checked_means():
    items = tuple(QAItem(f"q{i}", ("a",)) for i in range(4))
    conditions = [Condition("none", None), Condition("transfer", np.zeros((1, 2), int)),
                  Condition("random", np.zeros((1, 2), int), seed=0), Condition("random", np.zeros((1, 2), int), seed=1)]
    f1 = {"none": np.array([1.0, 1.0, 0.5, 0.5]), "transfer": np.array([0.0, 0.5, 0.0, 0.5]),
          "random#0": np.array([1.0, 1.0, 0.5, 0.5]), "random#1": np.array([1.0, 0.5, 0.5, 0.5])}
    em = {k: (v == 1.0).astype(float) for k, v in f1.items()}
    result = QAResult("en", "all", items, [""] * 4, {}, f1, em)
    rows = qa_summary(result, conditions)
    assert {(r["metric"], r["condition"]) for r in rows} == {(m, c) for m in ("f1", "em") for c in ("none", "transfer", "random")}
    assert all(r["layer"] == "all" and r["lang"] == "en" and r["items"] == 4 for r in rows)
    by = {(r["metric"], r["condition"]): r for r in rows}
    assert by["f1", "none"]["mean"] == pytest.approx(0.75)
    assert by["f1", "transfer"]["drop"] == pytest.approx(0.75 - 0.25)
    assert by["f1", "random"]["mean"] == pytest.approx(0.6875)  # seeds pooled: (0.75 + 0.625) / 2
    assert by["f1", "random"]["seed_drop_mean"] == pytest.approx(0.0625)
    assert by["f1", "random"]["transfer_minus_control"] == pytest.approx(0.5 - 0.0625)
    assert by["em", "transfer"]["mean"] == pytest.approx(0.0)


def test_run_qa_records_every_condition(lm):
    qa = QASet("toy", "en", (QAItem("What is a?", ("a",)), QAItem("Name a colour.", ("red", "blue"))))
    conditions = [Condition("none", None), Condition("transfer", ALL_NEURONS)]
    result = run_qa(lm, qa, conditions, mode="all", max_new_tokens=4, batch_size=2, progress=False)
    assert set(result.answers) == set(result.f1) == {"none", "transfer"}
    assert all(len(a) == 2 for a in result.answers.values())
    assert result.prompts[0] == "Answer briefly.\nQuestion: What is a?\nAnswer:"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model folder, a hand-built detection for it and a two-language QA file."""
    root = tmp_path_factory.mktemp("qa_cli")
    model = tiny_lm("gemma3_text")
    save_model(model, root / "model")
    scores = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    layers = (0, 1, 2)
    det = Detection("type1", "ja", scores, np.abs(scores), np.zeros((4, 32), np.float32), layers,
                    rank_neurons(scores, layers, 6), {"type": "type1", "language": "ja", "candidate_layers": list(layers)})
    write_detection(det, root / "det")
    rows = [{"question": {"en": "What is the capital of France?", "ja": "フランスの首都は？"},
             "answers": {"en": ["Paris"], "ja": ["パリ"]}},
            {"question": {"en": "What colour is the sky?", "ja": "空の色は？"},
             "answers": {"en": ["blue"], "ja": ["青", "青色"]}}]
    write_jsonl(root / "qa.jsonl", rows)
    return root


def test_cli_qa_writes_tables_and_figures(saved):
    out = saved / "out"
    code = main(["qa", "--model", str(saved / "model"), "--detection", str(saved / "det"), "--data",
                 str(saved / "qa.jsonl"), "--langs", "ja,en", "--controls", "random:2", "--max-new-tokens", "3",
                 "--batch-size", "2", "--out", str(out)])
    assert code == 0
    for name in ("qa_summary.csv", "qa_answers.csv", "qa.json", "qa_ja.png", "qa_en.png"):
        assert (out / name).is_file()
    answers = list(csv.DictReader((out / "qa_answers.csv").open(encoding="utf-8")))
    assert len(answers) == 2 * 2 * 4  # languages x questions x (none, transfer, random#0, random#1)
    assert {r["condition"] for r in answers} == {"none", "transfer", "random#0", "random#1"}
    assert any(r["question"] == "空の色は？" and r["gold"] == "青 | 青色" for r in answers)
    meta = json.loads((out / "qa.json").read_text(encoding="utf-8"))
    assert meta["mode"] == "all" and set(meta["languages"]) == {"ja", "en"}
    assert {r["condition"] for r in meta["summary"]} == {"none", "transfer", "random"}


def test_cli_qa_rejects_a_detection_of_another_model(saved, tmp_path):
    scores = np.zeros((5, 64), np.float32)
    det = Detection("type1", "ja", scores, scores, np.zeros((5, 32), np.float32), (0,), np.array([[0, 1]]),
                    {"type": "type1", "language": "ja", "candidate_layers": [0]})
    write_detection(det, tmp_path / "det")
    code = main(["qa", "--model", str(saved / "model"), "--detection", str(tmp_path / "det"), "--data",
                 str(saved / "qa.jsonl"), "--controls", "", "--out", str(tmp_path / "out")])
    assert code == 2


def test_mkqa_file_is_read_limited_and_scored_with_aliases(tmp_path):
    import argparse
    import gzip

    from transfer_neurons.cli.qa import qa_set

    def row(ja_text, aliases):
        return {"query": "q", "queries": {"ja": "ハムレットの作者は？"},
                "answers": {"ja": [{"type": "entity", "text": ja_text, "aliases": aliases}]}}

    rows = [row("ウィリアム・シェイクスピア", ["シェイクスピア"]), row("1603年", []), row("東京", [])]
    path = tmp_path / "mkqa.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()))
    qa = qa_set(argparse.Namespace(data=str(path), limit=2), "ja")
    assert len(qa) == 2 and qa.items[0].answers == ("ウィリアム・シェイクスピア", "シェイクスピア")
    f1, em = score_answers(["シェイクスピアです。", "1603"], qa.items, "ja")
    # alias シ ェ イ ク ス ピ ア (7 characters) within 9 predicted ones: P 7/9, R 1 -> F1 14/16;
    # "1603" vs tokens [1603, 年]: P 1, R 1/2 -> F1 2/3
    np.testing.assert_allclose(f1, [14 / 16, 2 / 3])
    np.testing.assert_array_equal(em, [0.0, 0.0])
