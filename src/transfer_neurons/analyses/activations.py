"""Activation-pattern similarity per layer (method.md §6.2), raw and mean-centred.

The cosine between the effective activation vectors a[l] (all d_ff neurons of a layer,
at the last real token) of an English sentence and an L2 sentence, parallel and
non-parallel, with the L2 side under each deactivation condition. Deactivated
neurons read zero in a[l] itself. Shares the capture-once, shared-centring-mean
machinery of analyses/similarity.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..conditions import Condition
from ..data import ParallelPairs
from ..models.loaded import LoadedModel
from .similarity import ConditionCosines, compare_conditions


def activation_similarity(
    lm: LoadedModel,
    pairs: ParallelPairs,
    conditions: Sequence[Condition],
    seed: int = 0,
    batch_size: int = 16,
    mode: str = "last",
    progress: bool = True,
) -> ConditionCosines:
    """Cosines of the effective activation vectors a[l] between hub and L2 sentences under each condition."""
    return compare_conditions(lm, pairs, conditions, "a", seed, batch_size, mode, progress)
