"""transfer-neurons: find, test and deactivate the MLP neurons that move a multilingual
LLM's representations between language-specific latent spaces and its shared semantic space.

The notebook API in one import:

    from transfer_neurons import load_model, compute_centroids, detect, deactivated, capture
"""

from ._version import __version__
from .capture import capture
from .centroids import language_centroids, shared_centroids
from .detection import compute_centroids, detect, read_detection, write_detection
from .interventions import Mean, Patch, Scale, Zero, applying, deactivated, parse_intervention
from .models.loading import load_model
from .scoring import rank_neurons, score_neurons
from .states import StateProvider

__all__ = [
    "Mean", "Patch", "Scale", "StateProvider", "Zero", "__version__", "applying", "capture", "compute_centroids",
    "deactivated", "detect", "language_centroids", "load_model", "parse_intervention", "rank_neurons", "read_detection",
    "score_neurons", "shared_centroids", "write_detection",
]
