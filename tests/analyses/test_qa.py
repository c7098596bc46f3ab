"""Generation-based QA: batched = one-at-a-time = an unbatched reference, deactivation modes, protocols,
F1 subsets, the scatter, chat templates, scoring, summary rows, CLI smoke."""

import csv
import json

import numpy as np
import pytest
import torch
from tiny import byte_tokenizer, save_model, tiny_lm, write_jsonl

from transfer_neurons.analyses.generation import (
    chat_prompts,
    greedy_generate,
    prompt_texts,
    prompt_token_ids,
)
from transfer_neurons.analyses.qa import (
    NEUTRAL_PROMPT,
    QAResult,
    first_line,
    generate_answers,
    line_ended,
    plot_f1_scatter,
    qa_prompt,
    qa_summary,
    run_qa,
    scatter_rows,
    score_answers,
    subset_counts,
)
from transfer_neurons.cli import main
from transfer_neurons.conditions import Condition
from transfer_neurons.data import QAItem, QASet
from transfer_neurons.detection import Detection, write_detection
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.interventions import deactivated
from transfer_neurons.models.loading import prepare
from transfer_neurons.scoring import rank_neurons

PROMPTS = ("Q: a?\nA:", "Q: what is the much longer question here?\nA:", "Q: xyz\nA:", "Q: 猫は?\nA:")
# very different lengths in bytes = tokens of the byte tokenizer: 2 to 88 (beyond gemma3's 16-token window)
UNEVEN = ("a?", "Q: xyz\nA:", "Where is the station? I have walked for an hour and the train leaves soon, help!\nAnswer:",
          "猫は?", "Name a colour of the sky on a clear day, please.")
ALL_NEURONS = np.array([(layer, i) for layer in range(4) for i in range(64)])  # every neuron of the tiny models
SOME_NEURONS = np.array([(1, i) for i in range(0, 64, 3)] + [(2, i) for i in range(10)])
TEMPLATE = ("{% for m in messages %}<bos>[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}[assistant] {% endif %}")


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama", padding_side="right")


def stop_rule(ids: list[int]) -> bool:
    """A row's own end for the tests: after a token divisible by 5 (rows end at different steps)."""
    return ids[-1] % 5 == 0


@torch.no_grad()
def reference(lm, ids, max_new, neurons=None, mode=None, eos=frozenset(), ended=stop_rule):
    """Greedy continuation of ONE prompt with no padding and no cache: every step recomputes the whole
    sequence, zeroing `neurons` by hand at the prompt's positions (all: every prompt token,
    prompt_last: its last one), never at generated ones."""
    zero_at = list(range(len(ids))) if mode == "all" else [len(ids) - 1]
    handles = []
    for layer in sorted({int(l) for l, _ in neurons}) if neurons is not None else []:
        index = torch.tensor([int(i) for l, i in neurons if l == layer])

        def hook(module, args, index=index):
            a = args[0].clone()
            for pos in zero_at:
                a[:, pos, index] = 0.0
            return (a,)

        handles.append(lm.view.out_proj(layer).register_forward_pre_hook(hook))
    out = []
    try:
        for _ in range(max_new):
            token = int(lm.model(input_ids=torch.tensor([list(ids) + out])).logits[0, -1].argmax())
            if token in eos:
                break
            out.append(token)
            if ended(out):
                break
    finally:
        for h in handles:
            h.remove()
    return out


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
@pytest.mark.parametrize("mode", [None, "all", "prompt_last"])
def test_batched_generation_equals_one_at_a_time_and_an_unbatched_reference(arch, mode):
    lm = tiny_lm(arch)
    ids = prompt_token_ids(lm.tokenizer, UNEVEN)
    assert max(map(len, ids)) > 4 * min(map(len, ids))
    want = [reference(lm, row, 8, SOME_NEURONS if mode else None, mode, eos=frozenset({2})) for row in ids]
    runs = {}
    for batch_size in (1, 2, len(ids)):
        with deactivated(lm, SOME_NEURONS, mode) if mode else torch.no_grad():
            runs[batch_size] = greedy_generate(lm, ids, 8, stop_rule, batch_size, eos=frozenset({2}))
    assert runs[1] == want  # same generated token ids, row by row
    assert runs[2] == want and runs[len(ids)] == want
    assert len({len(row) for row in want}) > 1  # rows ended at different steps, so per-row stopping was exercised


def test_end_of_sequence_ends_only_its_own_row(lm):
    ids = prompt_token_ids(lm.tokenizer, UNEVEN)
    free = greedy_generate(lm, ids, 6, batch_size=len(ids), eos=frozenset())
    eos = free[2][2]  # the third token of one row becomes "end of sequence"
    stopped = greedy_generate(lm, ids, 6, batch_size=len(ids), eos=frozenset({eos}))
    for row, before in zip(stopped, free):
        cut = before.index(eos) if eos in before else len(before)
        assert row == before[:cut]  # the eos id itself is not kept; other rows go on unchanged
    assert len(stopped[2]) == 2


def test_deactivation_modes_act_on_prompt_tokens_only(lm):
    ids = prompt_token_ids(lm.tokenizer, UNEVEN)
    plain = greedy_generate(lm, ids, 6, batch_size=len(ids), eos=frozenset())
    with deactivated(lm, ALL_NEURONS, "all"):
        every = greedy_generate(lm, ids, 6, batch_size=len(ids), eos=frozenset())
    with deactivated(lm, ALL_NEURONS, "prompt_last"):
        last = greedy_generate(lm, ids, 6, batch_size=len(ids), eos=frozenset())
    assert every != plain and last != plain and every != last
    never = lambda ids: False  # noqa: E731
    assert every == [reference(lm, row, 6, ALL_NEURONS, "all", ended=never) for row in ids]
    assert last == [reference(lm, row, 6, ALL_NEURONS, "prompt_last", ended=never) for row in ids]


def test_empty_neuron_set_changes_nothing_and_all_neurons_change_answers(lm):
    plain = generate_answers(lm, PROMPTS, None, progress=None)
    empty = generate_answers(lm, PROMPTS, np.zeros((0, 2), dtype=np.int64), progress=None)
    zeroed = generate_answers(lm, PROMPTS, ALL_NEURONS, mode="all", progress=None)
    last_only = generate_answers(lm, PROMPTS, ALL_NEURONS, mode="prompt_last", progress=None)
    assert empty == plain
    assert zeroed != plain
    assert last_only != plain and last_only != zeroed
    assert generate_answers(lm, PROMPTS, None, progress=None) == plain  # hooks were removed


def test_batched_answers_equal_one_by_one(lm):
    batched = generate_answers(lm, PROMPTS, ALL_NEURONS, "prompt_last", batch_size=4, progress=None)
    single = generate_answers(lm, PROMPTS, ALL_NEURONS, "prompt_last", batch_size=1, progress=None)
    assert batched == single


def test_answer_is_the_first_line_or_all_text(lm):
    texts = [lm.tokenizer.decode(ids, skip_special_tokens=True)
             for ids in greedy_generate(lm, prompt_token_ids(lm.tokenizer, PROMPTS), 12, eos=frozenset({2}))]
    whole = generate_answers(lm, PROMPTS, None, max_new_tokens=12, progress=None, first_line_only=False)
    assert whole == [t.strip() for t in texts]  # paper protocol: every generated token counts
    lines = generate_answers(lm, PROMPTS, None, max_new_tokens=12, progress=None)
    assert lines == [first_line(t) for t in texts]  # default protocol: a row stops at its first line's end


def test_errors_are_clear(lm):
    with pytest.raises(TransferNeuronsError, match="layer 9"):
        generate_answers(lm, PROMPTS, np.array([[9, 0]]), progress=None)  # layer 9 does not exist
    with pytest.raises(TransferNeuronsError, match="mode"):
        generate_answers(lm, PROMPTS, None, mode="last", progress=None)
    with pytest.raises(TransferNeuronsError, match="protocol"):
        qa_prompt("q", "en", "lm-eval")


def test_line_end_and_first_line():
    assert not line_ended("\n  Paris") and line_ended(" Paris\nQ") and not line_ended("Rome")
    assert first_line("\n  Paris \nQuestion: x") == "Paris"
    assert first_line("  \n") == ""


def test_prompt_templates():
    assert qa_prompt("Wie?", "de") == "Antworte kurz.\nFrage: Wie?\nAntwort:"
    assert qa_prompt("誰？", "ja").endswith("質問：誰？\n答え：")
    assert qa_prompt("Kdo?", "cs") == NEUTRAL_PROMPT.format(question="Kdo?")
    # the paper's prompt: question (a "?" added when it has none), the language's cue and a space
    assert qa_prompt("フランスの首都はどこですか？", "ja", "paper") == "フランスの首都はどこですか？ 答え: "
    assert qa_prompt("who wrote hamlet", "en", "paper") == "who wrote hamlet? Answer: "
    assert qa_prompt("Wie heet de koning?", "nl", "paper") == "Wie heet de koning? Antwoord: "
    assert qa_prompt("누구?", "ko", "paper").endswith(" 답: ")
    assert qa_prompt("Chi?", "it", "paper").endswith(" Risposta: ")
    assert qa_prompt("Kdo?", "cs", "paper") == "Kdo? Answer: "


def test_paper_protocol_defaults(lm):
    qa = QASet("toy", "en", (QAItem("What is a", ("a",)), QAItem("Name a colour.", ("red", "blue"))))
    conditions = [Condition("none", None), Condition("transfer", ALL_NEURONS)]
    result = run_qa(lm, qa, conditions, batch_size=2, progress=False, protocol="paper")
    assert result.max_new_tokens == 10 and result.protocol == "paper" and result.f1_subsets == (0.8, 0.5)
    assert result.prompts == ["What is a? Answer: ", "Name a colour.? Answer: "]
    default = run_qa(lm, qa, conditions, batch_size=2, progress=False)
    assert default.max_new_tokens == 12 and default.f1_subsets == ()


def scored_result():
    """A hand-made result: 5 questions, F1 without deactivation 1, 0.9, 0.6, 0.2, 0.85."""
    items = tuple(QAItem(f"q{i}", ("a",)) for i in range(5))
    f1 = {"none": np.array([1.0, 0.9, 0.6, 0.2, 0.85]), "transfer": np.array([0.0, 0.5, 0.6, 0.2, 0.0]),
          "random#0": np.array([1.0, 0.9, 0.0, 0.2, 0.85]), "random#1": np.array([1.0, 0.5, 0.6, 0.2, 0.85])}
    em = {k: (v == 1.0).astype(float) for k, v in f1.items()}
    conditions = [Condition("none", None), Condition("transfer", np.zeros((1, 2), int)),
                  Condition("random", np.zeros((1, 2), int), seed=0), Condition("random", np.zeros((1, 2), int), seed=1)]
    result = QAResult("en", "all", items, [""] * 5, {}, f1, em, "paper", 10, False, (0.8, 0.5))
    return result, conditions


def test_f1_subsets_have_counts_and_hand_checked_means():
    result, conditions = scored_result()
    assert subset_counts(result) == {"f1_none_ge_0.8": 3, "f1_none_ge_0.5": 4}
    rows = qa_summary(result, conditions)
    by = {(r["metric"], r["condition"]): r for r in rows}
    assert by["f1_none_ge_0.8", "none"]["items"] == 3 and by["f1_none_ge_0.5", "none"]["items"] == 4
    assert by["f1_none_ge_0.8", "none"]["mean"] == pytest.approx((1.0 + 0.9 + 0.85) / 3)
    assert by["f1_none_ge_0.8", "transfer"]["mean"] == pytest.approx(0.5 / 3)
    assert by["f1_none_ge_0.5", "random"]["mean"] == pytest.approx((2.75 + 2.95) / 8)  # seeds pooled: (1 + .9 + 0 + .85) and (1 + .5 + .6 + .85)
    assert by["f1", "none"]["items"] == 5  # the whole set stays reported
    result.f1["none"] = np.array([0.9, 0.1, 0.1, 0.1, 0.1])
    assert subset_counts(result) == {"f1_none_ge_0.8": 1, "f1_none_ge_0.5": 1}
    assert not any(r["metric"].startswith("f1_none_ge") for r in qa_summary(result, conditions))  # 1 item: no CI


def test_scatter_rows_and_figure(tmp_path):
    result, conditions = scored_result()
    rows = scatter_rows(result, conditions)
    assert len(rows) == 5 * 2  # questions x (transfer, random)
    by = {(r["condition"], r["item"]): r for r in rows}
    assert by["transfer", 1]["f1_none"] == 0.9 and by["transfer", 1]["f1_after"] == 0.5
    assert by["random", 2]["f1_after"] == pytest.approx(0.3) and by["random", 2]["seeds"] == 2  # mean of 0 and 0.6
    fig = plot_f1_scatter(result, conditions, "toy")
    assert len(fig.axes) == 2
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000


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


def templated(lm):
    """The tiny model with a tokenizer that has a simple chat template."""
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = TEMPLATE
    return prepare(lm.model, tokenizer, "tiny-chat")


def test_chat_template_wraps_prompts_without_a_second_bos(lm):
    chat = templated(lm)
    assert chat_prompts(chat.tokenizer, ["Hi?"]) == ["<bos>[user] Hi?\n[assistant] "]
    ids = prompt_token_ids(chat.tokenizer, prompt_texts(chat.tokenizer, ["Hi?"], True), True)[0]
    assert ids[0] == chat.tokenizer.bos_token_id and ids.count(chat.tokenizer.bos_token_id) == 1
    assert chat.tokenizer.decode(ids[1:]) == "[user] Hi?\n[assistant] "
    answers = generate_answers(chat, ["Hi?"], None, max_new_tokens=5, progress=None, chat_template=True,
                               first_line_only=False)
    by_hand = greedy_generate(chat, [ids], 5, eos=frozenset({2}))[0]
    assert answers == [chat.tokenizer.decode(by_hand, skip_special_tokens=True).strip()]
    result = run_qa(chat, QASet("toy", "en", (QAItem("Hi?", ("a",)),)), [Condition("none", None)], max_new_tokens=2,
                    progress=False, chat_template=True)
    assert result.prompts[0].startswith("<bos>[user] Answer briefly.") and result.chat_template


def test_chat_template_missing_is_a_clear_error(lm):
    with pytest.raises(TransferNeuronsError, match="chat template"):
        generate_answers(lm, PROMPTS, None, progress=None, chat_template=True)


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
    for name in ("qa_summary.csv", "qa_answers.csv", "qa_scatter.csv", "qa.json", "qa_ja.png", "qa_en.png",
                 "qa_scatter_ja.png", "qa_scatter_en.png"):
        assert (out / name).is_file()
    answers = list(csv.DictReader((out / "qa_answers.csv").open(encoding="utf-8")))
    assert len(answers) == 2 * 2 * 4  # languages x questions x (none, transfer, random#0, random#1)
    assert {r["condition"] for r in answers} == {"none", "transfer", "random#0", "random#1"}
    assert any(r["question"] == "空の色は？" and r["gold"] == "青 | 青色" for r in answers)
    meta = json.loads((out / "qa.json").read_text(encoding="utf-8"))
    assert meta["mode"] == "all" and set(meta["languages"]) == {"ja", "en"} and meta["protocol"] == "default"
    assert {r["condition"] for r in meta["summary"]} == {"none", "transfer", "random"}


def test_cli_qa_paper_protocol(saved):
    out = saved / "paper"
    code = main(["qa", "--model", str(saved / "model"), "--detection", str(saved / "det"), "--data",
                 str(saved / "qa.jsonl"), "--langs", "ja", "--controls", "", "--protocol", "paper", "--out", str(out)])
    assert code == 0
    meta = json.loads((out / "qa.json").read_text(encoding="utf-8"))
    assert meta["protocol"] == "paper" and meta["max_new_tokens"] == 10 and meta["f1_subsets"] == [0.8, 0.5]
    assert meta["languages"]["ja"]["example_prompt"] == "フランスの首都は？ 答え: "
    counts = meta["languages"]["ja"]["f1_subset_questions"]
    assert set(counts) == {"f1_none_ge_0.8", "f1_none_ge_0.5"} and all(0 <= n <= 2 for n in counts.values())
    scatter = list(csv.DictReader((out / "qa_scatter.csv").open(encoding="utf-8")))
    assert len(scatter) == 2 and {r["condition"] for r in scatter} == {"transfer"}
    answers = {(r["item"], r["condition"]): r for r in csv.DictReader((out / "qa_answers.csv").open(encoding="utf-8"))}
    assert [float(scatter[i]["f1_none"]) for i in range(2)] == [float(answers[str(i), "none"]["f1"]) for i in range(2)]
    assert (out / "qa_scatter_ja.png").stat().st_size > 1000


def test_cli_skip_invalid_answers_the_valid_questions(saved, tmp_path, capsys):
    good = (saved / "qa.jsonl").read_text(encoding="utf-8")
    (tmp_path / "qa.jsonl").write_text('{"question": {"ja": "?"}, "answers": {"ja": []}}\n' + good, encoding="utf-8")
    common = ["qa", "--model", str(saved / "model"), "--detection", str(saved / "det"), "--data",
              str(tmp_path / "qa.jsonl"), "--langs", "ja", "--controls", "", "--max-new-tokens", "2"]
    assert main([*common, "--out", str(tmp_path / "strict")]) == 2
    assert "qa.jsonl, line 1: expected 'answers'" in capsys.readouterr().err
    assert main([*common, "--skip-invalid", "--out", str(tmp_path / "out")]) == 0
    assert "skipped 1 invalid row(s)" in capsys.readouterr().err
    answers = list(csv.DictReader((tmp_path / "out" / "qa_answers.csv").open(encoding="utf-8")))
    assert {r["question"] for r in answers} == {"フランスの首都は？", "空の色は？"}


def test_cli_chat_template_error_names_the_flag(saved, capsys):
    code = main(["qa", "--model", str(saved / "model"), "--detection", str(saved / "det"), "--data",
                 str(saved / "qa.jsonl"), "--controls", "", "--chat-template", "--out", str(saved / "chat")])
    assert code == 2
    assert "--chat-template" in capsys.readouterr().err


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
    qa = qa_set(argparse.Namespace(data=str(path), limit=2, skip_invalid=False), "ja")
    assert len(qa) == 2 and qa.items[0].answers == ("ウィリアム・シェイクスピア", "シェイクスピア")
    f1, em = score_answers(["シェイクスピアです。", "1603"], qa.items, "ja")
    # alias シ ェ イ ク ス ピ ア (7 characters) within 9 predicted ones: P 7/9, R 1 -> F1 14/16;
    # "1603" vs tokens [1603, 年]: P 1, R 1/2 -> F1 2/3
    np.testing.assert_allclose(f1, [14 / 16, 2 / 3])
    np.testing.assert_array_equal(em, [0.0, 0.0])


def test_the_head_reads_contiguous_states(lm):
    # on CPU a linear layer given a strided view (the last positions of a batch) ran 10x slower
    seen = []
    handle = lm.view.unembed().register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    try:
        greedy_generate(lm, prompt_token_ids(lm.tokenizer, UNEVEN), 4, batch_size=len(UNEVEN))
    finally:
        handle.remove()
    assert len(seen) > 1 and all(seen)
