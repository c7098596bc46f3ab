"""Data-parallel scale-out: sentence shards per rank, sums all-reduced (gloo on CPU, nccl on GPU).

Launched with `torchrun` or `accelerate launch`, every rank scores its share of the
sentences; everything the analyses accumulate is a sum, so one all-reduce makes
every rank hold the single-process result. Without a process group these are no-ops.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def init_from_env() -> bool:
    """Join the process group torchrun/accelerate describe in the environment, if any."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if torch.cuda.is_available():  # one GPU per process: "cuda" then means this rank's GPU
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return is_active()


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """Number of processes sharing the work (1 without a process group)."""
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    """Only rank 0 writes files."""
    return rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of the items (every world_size-th, from its rank)."""
    if not is_active():
        return list(items)
    return list(items)[dist.get_rank() :: dist.get_world_size()]


def shard_batches(batches: Sequence[T]) -> list[T]:
    """This rank's batches of a one-process batching (every world_size-th), or all of them when there are
    fewer batches than ranks: each item meets the same batch, so the same arithmetic, on any number of ranks."""
    return shard(batches) if len(batches) >= world_size() else list(batches)


def gather_items(local: dict[int, T]) -> dict[int, T]:
    """Every rank's results keyed by item index, merged on every rank (objects sent between our own ranks)."""
    if not is_active():
        return local
    parts: list[dict[int, T] | None] = [None] * world_size()
    dist.all_gather_object(parts, local)
    return {index: value for part in parts for index, value in (part or {}).items()}


def all_reduce_sum(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sum tensors over ranks (returned on their original device and dtype)."""
    if not is_active():
        return tensors
    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    out = []
    for tensor in tensors:
        moved = tensor.to(device).clone()
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        out.append(moved.to(tensor.device))
    return tuple(out)


def gather_rows(local: torch.Tensor, rows: Sequence[int], total: int) -> torch.Tensor:
    """Every rank's rows of one [total, ...] tensor, assembled on every rank (this rank holds `rows` of it).

    Each rank writes its rows into zeros and the ranks' tensors are summed, so values are exact.
    """
    if not is_active():
        return local
    full = torch.zeros((total, *local.shape[1:]), dtype=local.dtype, device=local.device)
    full[torch.as_tensor(list(rows), dtype=torch.long, device=local.device)] = local
    return all_reduce_sum(full)[0]


def agree(value: T) -> T:
    """Rank 0's value of a picklable object, on every rank (decisions must not differ between ranks)."""
    if not is_active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def failed_ranks(error: str | None) -> dict[int, str]:
    """Every rank's error message (None: it succeeded), by rank, for the ranks that failed; on every rank."""
    mine = {} if error is None else {rank(): error}
    return gather_items(mine) if is_active() else mine
