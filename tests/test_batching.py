"""Batch size "auto": a memory rule on CPU, a halving search on an accelerator (faked here), recorded by detect."""

import json

import numpy as np
import pytest
import torch
from tiny import SENTENCES, save_model, tiny_lm, write_jsonl

from transfer_neurons import batching
from transfer_neurons.batching import check_batch_size, resolve_batch_size
from transfer_neurons.centroids import language_centroids
from transfer_neurons.cli import main
from transfer_neurons.detection import detect, write_detection
from transfer_neurons.errors import TransferNeuronsError


def fake_accelerator(monkeypatch, lm, fits_up_to: int) -> list[tuple[int, int]]:
    """Make `lm` count as on a GPU whose decoder runs out of memory above `fits_up_to` rows.

    Returns the list that records the (rows, tokens) of every decoder call.
    """
    calls = []
    forward = lm.view.decoder.forward

    def limited(*args, input_ids=None, **kwargs):
        calls.append(tuple(input_ids.shape))
        if input_ids.shape[0] > fits_up_to:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake): {input_ids.shape[0]} rows")
        return forward(*args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(lm.view.decoder, "forward", limited)
    monkeypatch.setattr(batching, "on_accelerator", lambda _: True)
    return calls


def test_check_batch_size_accepts_positive_ints_and_auto():
    assert check_batch_size(8) == 8 and check_batch_size("8") == 8
    assert check_batch_size("auto") == "auto" and check_batch_size(" AUTO ") == "auto"
    for bad in (0, -3, "x", True, 2.5, None):
        with pytest.raises(TransferNeuronsError, match="batch_size must be a positive integer or 'auto'"):
            check_batch_size(bad)


def test_cpu_auto_is_16_or_fewer_inputs():
    lm = tiny_lm("llama")
    assert resolve_batch_size(lm, "auto") == batching.CPU_BATCH == 64
    assert resolve_batch_size(lm, "auto", count=5) == 5
    assert resolve_batch_size(lm, 3) == 3


def test_cpu_auto_halves_when_memory_is_short(monkeypatch):
    lm = tiny_lm("llama")
    per_sentence = batching.activation_bytes(lm, 40)
    # a quarter of the "available" memory holds 5 sentences of 40 tokens: 16 -> 8 -> 4
    monkeypatch.setattr(batching, "available_memory", lambda: 4 * 5 * per_sentence)
    assert resolve_batch_size(lm, "auto", longest=[0] * 40) == 4


def test_accelerator_auto_halves_on_out_of_memory_until_a_batch_fits(monkeypatch):
    lm = tiny_lm("llama")
    calls = fake_accelerator(monkeypatch, lm, fits_up_to=12)
    assert resolve_batch_size(lm, "auto", longest=list(range(3, 33)), count=100) == 8
    assert calls == [(128, 30), (64, 30), (32, 30), (16, 30), (8, 30)]  # the longest input, halved from 128
    assert resolve_batch_size(lm, "auto", longest=list(range(3, 33)), count=100) == 8
    assert len(calls) == 5  # remembered for this model and length


def test_accelerator_auto_fails_clearly_when_nothing_fits_and_passes_other_errors(monkeypatch):
    lm = tiny_lm("llama")
    fake_accelerator(monkeypatch, lm, fits_up_to=0)
    with pytest.raises(TransferNeuronsError, match="not even a batch of one sentence fits"):
        resolve_batch_size(lm, "auto")

    def broken(size):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        batching.largest_fitting(broken, 8)


def test_detect_auto_backs_off_records_the_size_and_scores_as_that_size(monkeypatch, tmp_path):
    lm = tiny_lm("gemma3_text")
    centroids = language_centroids(lm, SENTENCES, batch_size=2)
    reference = detect(lm, "type2", "ja", SENTENCES, centroids, top_n=10, batch_size=2)
    calls = fake_accelerator(monkeypatch, lm, fits_up_to=2)
    det = detect(lm, "type2", "ja", SENTENCES, centroids, top_n=10, batch_size="auto")
    longest = max(len(ids) for ids in lm.tokenizer(list(SENTENCES))["input_ids"])
    assert calls[:3] == [(8, longest), (4, longest), (2, longest)]  # 6 sentences: start at 8
    assert det.meta["batch_size"] == 2 and reference.meta["batch_size"] == 2
    np.testing.assert_array_equal(det.scores, reference.scores)  # same batches, same sums
    write_detection(det, tmp_path / "det")
    assert json.loads((tmp_path / "det" / "meta.json").read_text())["batch_size"] == 2


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    save_model(tiny_lm("llama"), root / "model")
    rows = [{"en": s, "ja": s[::-1]} for s in SENTENCES * 4]  # 24 pairs
    write_jsonl(root / "pairs.jsonl", rows)
    return root, ["--model", str(root / "model"), "--lang", "ja", "--centroid-data", str(root / "pairs.jsonl"),
                  "--score-data", str(root / "pairs.jsonl"), "--type", "type2", "--top-n", "5"]


@pytest.mark.parametrize("option, recorded", [(["--batch-size", "auto"], 64), ([], 64), (["--batch-size", "5"], 5)])
def test_cli_batch_size_auto_on_cpu_picks_and_records_a_size(saved, option, recorded):
    root, common = saved
    out = root / f"det-{'-'.join(option) or 'default'}"
    assert main(["detect", *common, *option, "--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["batch_size"] == recorded


def test_cli_refuses_a_bad_batch_size(saved, capsys):
    root, common = saved
    with pytest.raises(SystemExit) as stop:
        main(["detect", *common, "--batch-size", "0", "--out", str(root / "bad")])
    assert stop.value.code == 2
    assert "argument --batch-size: value must be a positive integer or 'auto', got 0" in capsys.readouterr().err
