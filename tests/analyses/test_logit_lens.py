"""Logit lens: the lens is the model's own head at the last layer, masses sum to 1, token sets, CLI smoke."""

import json

import numpy as np
import pytest
import torch
from tiny import SENTENCES, save_model, tiny_lm

from transfer_neurons.analyses.logit_lens import (
    corpus_token_sets, lens_log_probs, lens_masses, lens_rows, logit_lens, script_token_sets,
    token_in_scripts, token_sets, vocab_size,
)
from transfer_neurons.capture import capture, make_batches
from transfer_neurons.cli import main
from transfer_neurons.conditions import Condition
from transfer_neurons.interventions import deactivated
from transfer_neurons.states import StateProvider


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma2", "gemma3_text"])
def test_last_layer_lens_is_the_models_own_softmax_and_masses_sum_to_one(arch):
    lm = tiny_lm(arch, padding_side="left")
    if arch == "gemma2":  # large logits, so Gemma 2's final softcapping (30) changes them visibly
        lm.view.unembed().weight.data.mul_(40)
    texts = SENTENCES[:3]
    h = capture(lm, texts, ("h",), batch_size=3, progress=None).h  # [n, layer, d]
    batch = make_batches(lm, texts, 3, sort_by_length=False)[0]
    with torch.no_grad():
        logits = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                          position_ids=batch.position_ids).logits
    own = torch.log_softmax(logits[torch.arange(3), batch.last].float(), dim=-1)
    lens = lens_log_probs(lm, h[:, -1])
    torch.testing.assert_close(lens, own, atol=2e-4, rtol=1e-4)
    if arch == "gemma2":
        assert lm.view.final_softcap() == 30.0
        uncapped = torch.log_softmax(lm.view.unembed()(lm.view.final_norm()(h[:, -1])), dim=-1)
        assert (uncapped - own).abs().max() > 0.1
    ones = torch.ones(vocab_size(lm), 1)
    total = lens_masses(lm, h, ones, chunk=5)  # [n, layer, 1]; chunks cross item boundaries
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=0)


def test_masses_sum_the_masked_probabilities():
    lm = tiny_lm("qwen2")
    h = torch.randn(2, lm.view.num_layers, lm.view.d_model)
    masks = torch.zeros(vocab_size(lm), 2)
    masks[[5, 7], 0] = 1
    masks[100, 1] = 1
    probs = lens_log_probs(lm, h.reshape(-1, lm.view.d_model)).exp().reshape(2, lm.view.num_layers, -1)
    got = lens_masses(lm, h, masks, chunk=3)
    torch.testing.assert_close(got[..., 0], probs[..., 5] + probs[..., 7])
    torch.testing.assert_close(got[..., 1], probs[..., 100])


def test_token_scripts_on_hand_made_strings():
    ja, ko, zh, en = ("kana", "han"), ("hangul",), ("han",), ("latin",)
    assert token_in_scripts("こんにちは", ja) and token_in_scripts("カタカナー", ja)
    assert token_in_scripts("漢字", ja) and token_in_scripts("漢字", zh) and not token_in_scripts("ひらがな", zh)
    assert token_in_scripts("々", ja) and token_in_scripts("ｶﾀ", ja)  # iteration mark, half-width kana
    assert token_in_scripts(" 한국어", ko) and not token_in_scripts("한국어", ja)
    assert token_in_scripts(" the", en) and token_in_scripts("Hello,", en)
    assert not token_in_scripts("café", en) and not token_in_scripts("猫a", ja) and not token_in_scripts("猫a", en)
    for no_letters in ("。", " ", "123", "\ufffd", ""):
        assert not token_in_scripts(no_letters, ja) and not token_in_scripts(no_letters, en)
    sets = script_token_sets(["<bos>"[:0], "猫", "ねこ", " cat", "고양이", "!"], "ja")
    assert sets.l2.tolist() == [False, True, True, False, False, False]
    assert sets.en.tolist() == [False, False, False, True, False, False]


def test_corpus_token_sets_keep_one_sided_lettered_tokens():
    lm = tiny_lm("llama")  # byte-level tokenizer: one token per ASCII character
    sets = corpus_token_sets(lm, ["ab!"], ["ac?"], "nl")
    ids = {ch: lm.tokenizer.convert_tokens_to_ids(ch) for ch in "abc!?"}
    assert np.flatnonzero(sets.l2).tolist() == [ids["c"]]  # '?' has no letter, 'a' and <bos> are shared
    assert np.flatnonzero(sets.en).tolist() == [ids["b"]]
    assert sets.l2.size == vocab_size(lm) == 300  # the unembedding's rows, beyond the tokenizer's 259


def test_an_empty_token_set_is_warned_about(caplog):
    lm = tiny_lm("llama")  # byte-level: no token is a kana or kanji character
    with caplog.at_level("WARNING", logger="transfer_neurons"):
        sets = token_sets(lm, "ja")
    assert not sets.l2.any() and sets.en.any()
    assert [r.getMessage() for r in caplog.records if "token set" in r.getMessage()] == [
        f"the ja token set of {lm.name} is empty ({sets.rule}): its lens mass is 0 at every layer"]


def test_no_neurons_leave_the_lens_unchanged_and_rows_follow_effects():
    lm = tiny_lm("gemma3_text")
    sets = corpus_token_sets(lm, ["The cat sleeps."], ["De kat slaapt."], "nl")
    conditions = [Condition("none", None), Condition("transfer", np.array([[1, 3], [2, 5]])),
                  Condition("random", np.zeros((0, 2), np.int64), seed=0)]
    result = logit_lens(lm, SENTENCES[:4], conditions, sets, batch_size=3, chunk=7, progress=False)
    np.testing.assert_allclose(result.values["l2_mass"]["random#0"], result.values["l2_mass"]["none"], atol=1e-7)
    before = result.values["en_mass"]["transfer"][:, 0]  # neurons of layers 1-2 cannot touch layer 0
    np.testing.assert_allclose(before, result.values["en_mass"]["none"][:, 0], atol=1e-7)
    assert not np.allclose(result.values["en_mass"]["transfer"][:, 3], result.values["en_mass"]["none"][:, 3])
    rows = lens_rows(result)
    assert len(rows) == 2 * 3 * lm.view.num_layers
    by = {(r["metric"], r["condition"], r["layer"]): r for r in rows}
    assert by[("l2_mass", "random", "3")]["drop"] == pytest.approx(0.0, abs=1e-7)
    assert by[("en_mass", "transfer", "0")]["drop"] == pytest.approx(0.0, abs=1e-7)
    transfer_drop = (result.values["en_mass"]["none"] - result.values["en_mass"]["transfer"])[:, 3].mean()
    assert by[("en_mass", "transfer", "3")]["drop"] == pytest.approx(transfer_drop)


def test_skipped_layers_equal_the_whole_head_pass_and_states_come_from_the_provider():
    lm = tiny_lm("gemma3_text")
    sets = corpus_token_sets(lm, ["The cat sleeps."], ["De kat slaapt."], "nl")
    texts = SENTENCES[:5]
    conditions = [Condition("none", None), Condition("late", np.array([[2, 3], [3, 5]])),
                  Condition("early", np.array([[0, 1], [3, 2]])), Condition("empty", np.zeros((0, 2), np.int64))]
    head_rows = []
    hook = lm.view.unembed().register_forward_hook(lambda module, args, out: head_rows.append(args[0].shape[0]))
    states = StateProvider(lm, batch_size=2)
    try:
        result = logit_lens(states, texts, conditions, sets, chunk=4, progress=False)
    finally:
        hook.remove()
    layers = lm.view.num_layers  # 4: none and early pass every layer, late layers 2-3, empty none
    assert sum(head_rows) == len(texts) * (layers + (layers - 2) + layers)
    assert states.captures == 3  # none, late, early; the empty set needs no capture
    masks = torch.from_numpy(np.stack([sets.l2, sets.en], axis=1).astype(np.float32))
    for cond in conditions:
        with deactivated(lm, cond.neurons, "last") if cond.neurons is not None else torch.no_grad():
            h = capture(lm, texts, ("h",), batch_size=2, progress=None).h
        whole = lens_masses(lm, h, masks, chunk=3).double().numpy()  # [item, layer, metric]
        for j, metric in enumerate(("l2_mass", "en_mass")):
            np.testing.assert_allclose(result.values[metric][cond.label], whole[..., j], rtol=0, atol=1e-6)
    late = result.values["en_mass"]["late"]
    assert not np.allclose(late[:, 3], result.values["en_mass"]["none"][:, 3])


def test_cli_smoke_with_and_without_detection(tmp_path):
    lm = tiny_lm("gemma2")
    save_model(lm, tmp_path / "model")
    rows = [{"en": "The cat sleeps.", "nl": "De kat slaapt."}, {"en": "I like tea.", "nl": "Ik hou van thee."},
            {"en": "Where is it?", "nl": "Waar is het?"}]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    common = ["--model", str(tmp_path / "model"), "--batch-size", "2", "--lang", "nl", "--data", str(data)]
    assert main(["detect", "--type", "type2", "--centroid-data", str(data), "--score-data", str(data),
                 "--top-n", "4", "--out", str(tmp_path / "det"), *common[:-2]]) == 0
    assert main(["logit-lens", *common, "--vocab-data", str(data), "--detection", str(tmp_path / "det"),
                 "--controls", "random:2,anti", "--out", str(tmp_path / "lens")]) == 0
    doc = json.loads((tmp_path / "lens/logit_lens.json").read_text())
    assert doc["meta"]["conditions"] == ["none", "transfer", "random#0", "random#1", "anti"]
    assert doc["meta"]["l2_tokens"] > 0 and doc["meta"]["en_tokens"] > 0
    assert {r["condition"] for r in doc["rows"]} == {"none", "transfer", "random", "anti"}
    assert (tmp_path / "lens/logit_lens.png").stat().st_size > 0
    assert main(["logit-lens", *common[:-4], "--lang", "ja", "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain/logit_lens.json").read_text())
    assert {r["condition"] for r in plain["rows"]} == {"none"} and plain["meta"]["token_rule"].startswith("script")
