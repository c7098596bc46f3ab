"""Multiple-choice scoring by option log-likelihood: exact values, deactivated positions, choices, CLI smoke."""

import csv
import json

import numpy as np
import pytest
import torch
from tiny import byte_tokenizer, save_model, tiny_lm

from transfer_neurons.analyses.reasoning import (
    _row_batches,
    mc_prompt,
    option_choices,
    option_logliks,
    right_option_probability,
    run_reasoning,
)
from transfer_neurons.cli import main
from transfer_neurons.conditions import Condition
from transfer_neurons.data import MCItem, MCSet
from transfer_neurons.detection import Detection, write_detection
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.models.loading import prepare
from transfer_neurons.scoring import rank_neurons

PROMPTS = ["Q: a?\nA:", "Question: what is the longer question here?\nAnswer:", "xyz:"]
OPTIONS = [[" yes", " no"], [" a much longer answer", " b", " c d"], [" no"]]
NEURONS = np.array([(1, i) for i in range(0, 64, 3)] + [(2, i) for i in range(10)])


def reference(lm, prompt, option, neurons=None, positions="prompt", special=True):
    """log p(option | prompt) from ONE unbatched forward pass, zeroing `neurons` by hand at the prompt's
    positions ("prompt": every prompt token, "last": the prompt's last token); special: add <bos>."""
    tok = lm.tokenizer
    p_ids, o_ids = tok(prompt, add_special_tokens=special)["input_ids"], tok(option, add_special_tokens=False)["input_ids"]
    zero_at = list(range(len(p_ids))) if positions == "prompt" else [len(p_ids) - 1]
    handles = []
    for layer in sorted({int(l) for l, _ in neurons}) if neurons is not None else []:
        index = torch.tensor([int(i) for l, i in neurons if l == layer])

        def hook(module, args, index=index):
            a = args[0].clone()
            for pos in zero_at:
                a[:, pos, index] = 0.0
            return (a,)

        handles.append(lm.view.out_proj(layer).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([p_ids + o_ids])).logits[0].float()
    finally:
        for h in handles:
            h.remove()
    logp = torch.log_softmax(logits, -1)
    return sum(logp[len(p_ids) - 1 + k, t].item() for k, t in enumerate(o_ids))


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2", "gemma2", "cohere"])  # gemma2 softcaps, cohere scales
@pytest.mark.parametrize("batch_size", [1, 3])
def test_logliks_equal_a_single_unbatched_pass(arch, batch_size):
    lm = tiny_lm(arch)
    got = option_logliks(lm, PROMPTS, OPTIONS, batch_size=batch_size, progress=None)
    for scores, prompt, options in zip(got, PROMPTS, OPTIONS):
        np.testing.assert_allclose(scores, [reference(lm, prompt, o) for o in options], atol=1e-4)


@pytest.mark.parametrize(("mode", "positions"), [("all", "prompt"), ("prompt_last", "last")])
def test_deactivation_zeroes_prompt_positions_only(mode, positions):
    lm = tiny_lm("llama")
    got = option_logliks(lm, PROMPTS, OPTIONS, NEURONS, mode=mode, batch_size=3, progress=None)
    plain = option_logliks(lm, PROMPTS, OPTIONS, None, batch_size=3, progress=None)
    for scores, prompt, options in zip(got, PROMPTS, OPTIONS):
        np.testing.assert_allclose(scores, [reference(lm, prompt, o, NEURONS, positions) for o in options], atol=1e-4)
    assert not np.allclose(np.concatenate(got), np.concatenate(plain))


def test_empty_neuron_set_equals_no_deactivation():
    lm = tiny_lm("llama")
    plain = option_logliks(lm, PROMPTS, OPTIONS, None, progress=None)
    empty = option_logliks(lm, PROMPTS, OPTIONS, np.zeros((0, 2), np.int64), progress=None)
    np.testing.assert_array_equal(np.concatenate(plain), np.concatenate(empty))


def test_choices_by_total_and_per_byte_loglik():
    loglik = [np.array([-3.0, -4.0]), np.array([-1.0, -2.0, -0.5])]
    sizes = [np.array([1.0, 8.0]), np.array([1.0, 1.0, 10.0])]
    total, normed = option_choices(loglik, sizes)
    assert total.tolist() == [0, 2]  # -3 > -4; -0.5 highest
    assert normed.tolist() == [1, 2]  # per byte: -3 vs -0.5; -1, -2, -0.05


def test_right_option_probability():
    p = right_option_probability([np.array([0.0, np.log(3.0)]), np.array([5.0, 5.0, 5.0, 5.0])], [1, 0])
    np.testing.assert_allclose(p, [0.75, 0.25])


def test_mc_prompt_letters_options_and_ends_with_the_cue():
    item = MCItem("Which is a fruit?", ("Carrot", "Apple"), 1)
    assert mc_prompt(item, "en") == "Which is a fruit?\nA. Carrot\nB. Apple\nAnswer:"
    assert mc_prompt(item, "ja").endswith("\n答え:")
    assert mc_prompt(item, "cs").endswith("\nAnswer:")


def test_run_reasoning_scores_follow_the_logliks():
    lm = tiny_lm("llama")
    items = (MCItem("Q: a?", ("yes", "no", "maybe"), 0), MCItem("Q: b?", ("one", "two"), 1))
    mc = MCSet("toy", "en", items)
    conditions = [Condition("none", None), Condition("transfer", NEURONS)]
    result = run_reasoning(lm, mc, conditions, batch_size=2, progress=False)
    for label in ("none", "transfer"):
        best = [int(np.argmax(ll)) for ll in result.loglik[label]]
        np.testing.assert_array_equal(result.scores["acc"][label], [best[0] == 0, best[1] == 1])
        assert ((result.scores["p_correct"][label] > 0) & (result.scores["p_correct"][label] < 1)).all()
    ref = [reference(lm, mc_prompt(items[0], "en"), " " + o) for o in items[0].options]
    np.testing.assert_allclose(result.loglik["none"][0], ref, atol=1e-4)
    assert result.chance == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_cli_reasoning_writes_tables_and_figures(tmp_path):
    model = tiny_lm("qwen2")
    save_model(model, tmp_path / "model")
    scores = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    det = Detection("type1", "en", scores, np.abs(scores), np.zeros((4, 32), np.float32), (0, 1, 2),
                    rank_neurons(scores, (0, 1, 2), 6), {"type": "type1", "language": "en", "candidate_layers": [0, 1, 2]})
    write_detection(det, tmp_path / "det")
    rows = [{"question": {"en": "2 + 2 = ?"}, "options": {"en": ["4", "5", "22"]}, "answer": 0},
            {"question": {"en": "Which is a fruit?"}, "options": {"en": ["Carrot", "Apple"]}, "answer": 1}]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["reasoning", "--model", str(tmp_path / "model"), "--detection", str(tmp_path / "det"),
                 "--data", str(tmp_path / "mc.jsonl"), "--controls", "random:2,anti", "--mode", "prompt_last",
                 "--out", str(out)])
    assert code == 0
    for name in ("reasoning_summary.csv", "reasoning_items.csv", "reasoning.json", "reasoning_en.png"):
        assert (out / name).is_file()
    items = list(csv.DictReader((out / "reasoning_items.csv").open(encoding="utf-8")))
    assert len(items) == 2 * 5 and {r["answer"] for r in items} == {"A", "B"}  # none, transfer, 2 random, anti
    summary = json.loads((out / "reasoning.json").read_text())
    assert summary["mode"] == "prompt_last"
    assert {(r["metric"], r["condition"]) for r in summary["summary"]} == {
        (m, c) for m in ("acc", "acc_norm", "p_correct") for c in ("none", "transfer", "random", "anti")}


def test_row_batches_bound_the_option_rows():
    assert _row_batches([2, 0, 1], [2, 3, 1], 3) == [[2, 0], [1]]
    assert _row_batches([0, 1], [5, 1], 3) == [[0], [1]]  # an item larger than a batch stands alone


# prompts of 3 to 95 tokens and options of 2 to 31 (byte tokens), so batches mix very different lengths
UNEVEN_PROMPTS = ["Q?", "Which of these is the longest river that flows through more than three countries of Europe?\nAnswer:",
                  "2+2=", "猫はどこにいますか？\n答え:"]
UNEVEN_OPTIONS = [[" a", " b"], [" the Danube (ten countries)", " Rhine", " Po", " Loire"],
                  [" 4", " 5", " 22"], [" 家", " 庭の木の上で寝ている"]]


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
@pytest.mark.parametrize("mode", [None, "all", "prompt_last"])
def test_batched_scores_equal_one_at_a_time(arch, mode):
    lm = tiny_lm(arch)
    neurons = NEURONS if mode else None
    single = option_logliks(lm, UNEVEN_PROMPTS, UNEVEN_OPTIONS, neurons, mode or "all", batch_size=1, progress=None)
    for batch_size in (4, 64):  # several items per batch; every (item, option) row of the condition at once
        batched = option_logliks(lm, UNEVEN_PROMPTS, UNEVEN_OPTIONS, neurons, mode or "all", batch_size=batch_size,
                                 progress=None)
        for got, want in zip(batched, single, strict=True):
            # float32 sums over different padded shapes differ in the last digits; 1e-4 nats is far below
            # any gap between options that decides a choice here (checked by the argmax below)
            np.testing.assert_allclose(got, want, atol=1e-4)
            assert int(np.argmax(got)) == int(np.argmax(want))


def test_chat_template_scores_options_after_the_assistant_turn():
    lm = tiny_lm("llama")
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}<bos>[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}[assistant]{% endif %}")
    chat = prepare(lm.model, tokenizer, "tiny-chat")
    got = option_logliks(chat, PROMPTS, OPTIONS, batch_size=3, progress=None, chat_template=True)
    for scores, prompt, options in zip(got, PROMPTS, OPTIONS):
        text = f"<bos>[user] {prompt}\n[assistant]"  # the template holds <bos>: no second one is added
        np.testing.assert_allclose(scores, [reference(chat, text, o, special=False) for o in options], atol=1e-4)
    with pytest.raises(TransferNeuronsError, match="chat template"):
        option_logliks(lm, PROMPTS, OPTIONS, progress=None, chat_template=True)


def test_the_head_reads_contiguous_states():
    # on CPU a linear layer given a strided view (the prompts' last positions) ran 10x slower
    lm, seen = tiny_lm("llama"), []
    handle = lm.view.unembed().register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    try:
        option_logliks(lm, PROMPTS, OPTIONS, batch_size=3, progress=None)
    finally:
        handle.remove()
    assert len(seen) > 1 and all(seen)
