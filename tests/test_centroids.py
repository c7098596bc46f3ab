"""Centroids: means of raw layer outputs, summed on the model's device and copied to the host once."""

import torch
from host_copies import HostCopies
from tiny import SENTENCES, tiny_lm

from transfer_neurons.capture import capture
from transfer_neurons.centroids import language_centroids, mean_layer_outputs


def test_mean_layer_outputs_is_the_mean_of_captured_outputs():
    lm = tiny_lm("gemma3_text")
    h = capture(lm, SENTENCES, want=("h",), progress=None).h  # [n, layer, d_model]
    # float64 sums of float32 values in another order: equal to float32 rounding
    torch.testing.assert_close(mean_layer_outputs(lm, SENTENCES, batch_size=4, progress=None), h.mean(0),
                               atol=1e-5, rtol=1e-5)


def test_centroids_copy_to_the_host_once_per_run():
    lm = tiny_lm("llama")
    seen = []
    for batches in (1, 4):
        with HostCopies() as copies:
            language_centroids(lm, SENTENCES * batches, batch_size=len(SENTENCES))
        seen.append(sorted(copies.calls))
    assert seen[0] == seen[1] and len(seen[0]) <= 2, seen  # the [layer, d_model] sums and the count


def test_auto_batch_size_on_cpu_gives_the_same_centroids():
    lm = tiny_lm("llama")
    torch.testing.assert_close(language_centroids(lm, SENTENCES, batch_size="auto"),
                               language_centroids(lm, SENTENCES, batch_size=2), atol=1e-5, rtol=1e-5)
