"""detection_figure draws on a Figure of its own, not on pyplot's global state, and saves as a PNG."""

from __future__ import annotations

import matplotlib.image
import numpy as np
from matplotlib.figure import Figure

from transfer_neurons.detection import Detection
from transfer_neurons.outputs import save_figure
from transfer_neurons.report.figures import detection_figure

PNG = b"\x89PNG\r\n\x1a\n"


def a_detection() -> Detection:
    """Type-1 neurons of a 4-layer, 8-neuron model: two in layer 1, one in layer 2."""
    scores = np.random.default_rng(0).normal(size=(4, 8))  # [layer, d_ff]
    neurons = np.array([[1, 3], [1, 5], [2, 0]])  # [top_n, 2]
    return Detection("type1", "ja", scores, np.abs(scores), np.zeros((4, 3)), (0, 1, 2), neurons)


def test_detection_figure_is_a_figure_of_its_own_that_saves_a_png(tmp_path):
    fig = detection_figure(a_detection(), "tiny")
    assert isinstance(fig, Figure)
    assert fig.canvas.manager is None  # pyplot does not know it: no window can open, nothing to close
    bars = fig.axes[0].containers[0]
    assert [bar.get_height() for bar in bars] == [0, 2, 1, 0]  # neurons per layer
    written = save_figure(tmp_path / "detection.png", fig)
    assert written == tmp_path / "detection.png" and written.read_bytes().startswith(PNG)
    pixels = matplotlib.image.imread(written)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
