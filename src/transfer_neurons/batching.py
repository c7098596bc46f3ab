"""Batch size: a fixed number, or `"auto"`, the largest batch that fits the device.

On an accelerator, "auto" runs one batch of the longest input at a start size (256, or
the power of two that holds every input) and halves it on every out-of-memory error until a batch fits, as
accelerate's find_executable_batch_size does. A halved size needs about half the
activation memory of the one that failed, which leaves room for the scoring work after
each forward. On CPU an out-of-memory error is no exception (the kernel ends the
process), so "auto" is a rule instead: 64 sentences, halved while a batch's estimated
activations exceed a quarter of the available memory. On 2 CPU cores capture ran as fast
at 64 as at 16, and greedy answering 1.7x faster (each decoding step reads every weight
once, whatever the batch); docs/performance.md has the figures.
"""

from __future__ import annotations

import gc
import os
import weakref
from collections.abc import Callable, Sequence

import torch

from .errors import TransferNeuronsError
from .models.loaded import LoadedModel
from .tokens import context_limit

AUTO = "auto"
ACCELERATOR_START = 256  # first size tried on an accelerator
CPU_BATCH = 64  # CPU size unless memory is short
PROBE_TOKENS = 256  # input length assumed when the inputs are not known yet
_MEMORY_SHARE = 4  # on CPU, a batch may use 1/4 of the available memory
_OOM_TEXT = ("out of memory", "can't allocate memory")
LOGIT_BYTES = 256 << 20
"""Memory for one step of float32 logits (rows x vocabulary): 256 rows of a 262k vocabulary. Larger
steps run the unembedding faster (2 CPU cores: 110 GFLOP/s at 64 rows, 153 at 256)."""
_chosen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(tokens, start): size}


def logit_rows(vocab: int) -> int:
    """Rows of logits per step of the head so that they take about LOGIT_BYTES."""
    return max(1, LOGIT_BYTES // (4 * vocab))


def check_batch_size(value: object, name: str = "batch_size") -> int | str:
    """A positive int or "auto" (a numeric string is read as an int); else an error naming `name`."""
    if isinstance(value, str):
        if value.strip().lower() == AUTO:
            return AUTO
        try:
            value = int(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TransferNeuronsError(f"{name} must be a positive integer or 'auto', got {value!r}", option=name)
    return value


def default_batch_size(lm: LoadedModel) -> int | str:
    """The default batch size: "auto" when the model is on an accelerator, else CPU_BATCH."""
    return AUTO if on_accelerator(lm) else CPU_BATCH


def on_accelerator(lm: LoadedModel) -> bool:
    """Whether any weight of the model lives on a GPU (or another accelerator)."""
    return any(p.device.type not in ("cpu", "meta") for p in lm.model.parameters())


def resolve_batch_size(
    lm: LoadedModel,
    batch_size: int | str,
    longest: Sequence[int] | None = None,
    count: int | None = None,
) -> int:
    """The batch size to run with: batch_size itself, or what "auto" finds for this model.

    longest: token ids of the longest input (None: PROBE_TOKENS tokens, or the model's
    context if shorter); count: number of inputs (no batch is made larger). Sizes "auto"
    finds are remembered per model.
    """
    batch_size = check_batch_size(batch_size)
    if batch_size != AUTO:
        return batch_size
    if longest is None:
        longest = [0] * min(PROBE_TOKENS, context_limit(lm) or PROBE_TOKENS)
    ids = torch.as_tensor(list(longest), dtype=torch.long)  # [tokens]
    start = ACCELERATOR_START if on_accelerator(lm) else CPU_BATCH
    if count is not None:  # the power of two that holds every input, if that is less
        start = min(start, 1 << max(0, count - 1).bit_length())
    key = (len(ids), start)
    known = _chosen.setdefault(lm.model, {})
    if key not in known:
        if on_accelerator(lm):
            known[key] = largest_fitting(lambda size: probe(lm, ids, size), start)
        else:
            known[key] = cpu_batch_size(lm, len(ids), start)
    return known[key] if count is None else min(known[key], max(1, count))


def largest_fitting(run_batch: Callable[[int], None], start: int) -> int:
    """Halve `start` until run_batch(size) raises no out-of-memory error; that size."""
    size = start
    while size >= 1:
        if _fits(run_batch, size):
            return size
        size //= 2
    raise TransferNeuronsError("not even a batch of one sentence fits in the device's memory; use a smaller model, "
                               "or dtype='bfloat16' or 'float16'", mentions=("dtype",))


def _fits(run_batch: Callable[[int], None], size: int) -> bool:
    """Run one batch; False (with the device's cache emptied) on an out-of-memory error."""
    try:
        run_batch(size)
        return True
    except RuntimeError as err:  # torch.cuda.OutOfMemoryError is one; other backends say it in words
        if not isinstance(err, torch.cuda.OutOfMemoryError) and not any(t in str(err) for t in _OOM_TEXT):
            raise
    gc.collect()  # outside the except block: the traceback no longer holds the batch's tensors
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return False


@torch.no_grad()
def probe(lm: LoadedModel, ids: torch.Tensor, size: int) -> None:
    """One forward of `size` copies of ids [tokens] through the decoder stack, as capture runs it."""
    view = lm.view
    input_ids = ids.to(view.device).repeat(size, 1)  # [size, tokens]
    mask = torch.ones_like(input_ids)
    view.decoder(input_ids=input_ids, attention_mask=mask, use_cache=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # an asynchronous failure surfaces here, not in the real run


def cpu_batch_size(lm: LoadedModel, tokens: int, start: int) -> int:
    """`start` halved while a batch's estimated activation memory exceeds its share of available memory."""
    need = activation_bytes(lm, tokens)
    budget = available_memory() / _MEMORY_SHARE
    size = start
    while size > 1 and size * need > budget:
        size //= 2
    return size


def activation_bytes(lm: LoadedModel, tokens: int) -> int:
    """Estimated peak float32 bytes of one sentence's decoder forward: one layer's MLP and attention."""
    config = lm.model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1))
    view = lm.view
    per_token = 3 * view.d_ff + 4 * view.d_model + heads * tokens  # gate, up, product; residual, norms; scores
    return 4 * tokens * per_token


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux MemAvailable, else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
