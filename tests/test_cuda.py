"""On a CUDA GPU the tiny models give what they give on the CPU, and the device paths do not wait per layer.

Skipped without CUDA (CI has none); on a GPU machine: `PYTHONPATH=src python -m pytest tests/test_cuda.py`.
"""

import copy
import json
import warnings

import numpy as np
import pytest
import torch
from test_study import make_setup
from test_study_distributed import ITEM_FILES, STAGES, assert_close, csv_values
from tiny import SENTENCES, tiny_lm

from transfer_neurons.analyses.generation import greedy_generate, prompt_token_ids
from transfer_neurons.analyses.specificity import collect_language_stats
from transfer_neurons.capture import capture
from transfer_neurons.centroids import language_centroids, shared_centroids
from transfer_neurons.detection import detect
from transfer_neurons.interventions import deactivated, parse_intervention
from transfer_neurons.models.loading import prepare
from transfer_neurons.scoring import score_neurons
from transfer_neurons.study import resolve_config, run_study

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TEXTS = SENTENCES * 3


def on_cuda(lm):
    """A copy of a tiny model on the GPU, with the same tokenizer."""
    return prepare(copy.deepcopy(lm.model).to("cuda"), lm.tokenizer, f"{lm.name} on cuda")


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_capture_and_scores_on_cuda_equal_the_cpu(arch):
    cpu = tiny_lm(arch)
    gpu = on_cuda(cpu)
    got = capture(gpu, TEXTS, ("h", "m", "a"), 4, progress=None)  # on the host, as the analyses keep them
    want = capture(cpu, TEXTS, ("h", "m", "a"), 4, progress=None)
    for name in ("h", "m", "a"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), atol=1e-4, rtol=1e-4)
    hub, l2 = SENTENCES[:3], SENTENCES[3:]
    for make in (lambda lm: shared_centroids(lm, hub, l2, 2), lambda lm: language_centroids(lm, l2, 2)):
        want = score_neurons(cpu, make(cpu), TEXTS, 4, progress=None)
        got = score_neurons(gpu, make(gpu), TEXTS, 4, progress=None)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5 * np.abs(want.scores).max())
        np.testing.assert_allclose(got.magnitudes, want.magnitudes, rtol=1e-4)


def test_deactivated_answers_and_specificity_on_cuda_equal_the_cpu():
    cpu = tiny_lm("llama")
    gpu = on_cuda(cpu)
    prompts = prompt_token_ids(cpu.tokenizer, SENTENCES[:4])
    neurons = np.array([[0, 3], [1, 5], [2, 7], [3, 60]])
    answers = {}
    for lm in (cpu, gpu):
        with deactivated(lm, neurons, "all"):
            answers[lm.name] = greedy_generate(lm, prompts, max_new_tokens=6, eos=frozenset())
    assert answers[gpu.name] == answers[cpu.name]
    want = collect_language_stats(cpu, {"a": SENTENCES, "b": SENTENCES[:3]}, batch_size=3, progress=False)
    got = collect_language_stats(gpu, {"a": SENTENCES, "b": SENTENCES[:3]}, batch_size=3, progress=False)
    np.testing.assert_allclose(got.total, want.total, atol=1e-4)
    np.testing.assert_array_equal(got.count, want.count)


@pytest.mark.parametrize("kind", ["zero", "patch"])
def test_decoding_under_an_intervention_syncs_no_more_with_more_layers(kind):
    """CUDA's own sync detector: 3 deactivated layers make the host wait as often as 1 does."""
    gpu = on_cuda(tiny_lm("llama"))
    prompts = prompt_token_ids(gpu.tokenizer, SENTENCES[:4])
    intervention = parse_intervention(kind, sources=SENTENCES[2:6], targets=SENTENCES[:4])
    syncs = {}
    for layers in (1, 3):
        with deactivated(gpu, np.array([[layer, 5] for layer in range(layers)]), "last", intervention):
            greedy_generate(gpu, prompts, max_new_tokens=1, eos=frozenset())  # binds the intervention
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    greedy_generate(gpu, prompts, max_new_tokens=4, eos=frozenset(), batch_size=4)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
        syncs[layers] = sum("synchronizing" in str(w.message) for w in seen)
    assert syncs[1] == syncs[3], syncs


def test_batch_size_auto_on_cuda_finds_and_records_a_size():
    gpu = on_cuda(tiny_lm("llama"))
    det = detect(gpu, "type2", "ja", TEXTS, language_centroids(gpu, TEXTS, 4), top_n=10, batch_size="auto")
    assert isinstance(det.meta["batch_size"], int) and det.meta["batch_size"] >= len(TEXTS)


def test_the_tiny_study_on_cuda_gives_the_cpu_results(tmp_path):
    """Every analysis, run with device cuda, writes the numbers and answers the CPU run writes."""
    options = {**make_setup(tmp_path), "stages": STAGES, "dtype": "float32"}
    for device in ("cpu", "cuda"):
        run = run_study(resolve_config({**options, "device": device}), tmp_path / device)
        assert all(s.status == "computed" for s in run.stages), [(s.name, s.error) for s in run.stages]
    results = {device: json.loads((tmp_path / device / "results.json").read_text()) for device in ("cpu", "cuda")}
    assert_close(results["cuda"], results["cpu"], tolerance=1e-4)
    for name in ITEM_FILES:
        assert_close(csv_values(tmp_path / "cuda" / name), csv_values(tmp_path / "cpu" / name), name, tolerance=1e-4)
