"""Prompts as token ids (optionally in the tokenizer's chat template) and batched greedy decoding.

Decoding runs its own loop rather than `model.generate`, so every detail that batching could
change is explicit:
- prompts are LEFT-padded; position ids count real tokens only (`mask.cumsum - 1`), so a row's
  positions are the same as when it runs alone; the attention mask grows by one real column
  per step;
- the prompt runs once (the pass interventions.deactivated sees with an empty cache, so modes
  `all` and `prompt_last` act on it), then one token per step with the key-value cache (the
  passes deactivated treats as generated tokens, never intervened on in those modes);
- each row stops at its own end: an end-of-sequence id (not kept) or the caller's `ended` rule
  (the token that ends it is kept); a finished row leaves the batch and its cache rows are dropped,
  so the remaining rows do not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..capture import cache_argument, returned_cache
from ..distributed import gather_items, shard_batches
from ..errors import TransferNeuronsError
from ..log import progress_enabled
from ..models.loaded import LoadedModel


def chat_prompts(tokenizer, prompts: Sequence[str]) -> list[str]:
    """Each prompt as the user turn of the tokenizer's chat template, ending with the assistant's turn opening."""
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise TransferNeuronsError(
            f"chat_template=True needs a tokenizer with a chat template, but {name!r} has none "
            "(instruction-tuned models ship one; base models usually do not)"
        )
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts]


def prompt_texts(tokenizer, prompts: Sequence[str], chat_template: bool = False) -> list[str]:
    """The text the model reads for each prompt: the prompt itself, or its chat-template form."""
    return chat_prompts(tokenizer, prompts) if chat_template else list(prompts)


def prompt_token_ids(tokenizer, texts: Sequence[str], chat_template: bool = False) -> list[list[int]]:
    """Token ids of prompt texts; chat-template texts already hold their special tokens (no second <bos>)."""
    return tokenizer(list(texts), add_special_tokens=not chat_template)["input_ids"]


def left_padded(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (ids [batch, seq], mask [batch, seq]) padded on the left."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def pad_id(tokenizer) -> int:
    """The id padding uses: the tokenizer's pad token, else its end-of-sequence token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def eos_ids(lm: LoadedModel) -> frozenset[int]:
    """Ids that end a row: the model's generation config's end-of-sequence ids, else the tokenizer's."""
    value = getattr(lm.model.generation_config, "eos_token_id", None)
    if value is None:
        value = lm.tokenizer.eos_token_id
    if value is None:
        return frozenset()
    return frozenset([value] if isinstance(value, int) else value)


@torch.no_grad()
def _greedy_batch(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    ended: Callable[[list[int]], bool],
    eos: frozenset[int],
    pad: int,
) -> list[list[int]]:
    """Greedy continuation ids of one batch of prompts, each row stopped at its own end."""
    device, decoder = lm.view.device, lm.view.decoder
    ids, mask = left_padded(prompts, pad)  # [row, prompt]
    positions = (mask.cumsum(1) - 1).clamp(min=0)  # [row, prompt]; real tokens count from 0 in every row
    out: list[list[int]] = [[] for _ in prompts]
    live = torch.arange(len(prompts))  # [live] batch row of each row still generating
    next_position = mask.sum(1)  # [live]
    cache_kwargs: dict = {}
    for step in range(max_new_tokens):
        result = decoder(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                         use_cache=True, **cache_kwargs)
        tokens = lm.view.head_logits(result.last_hidden_state[:, -1]).argmax(-1).tolist()  # [live]
        keep = []
        for j, (row, token) in enumerate(zip(live.tolist(), tokens)):
            if token in eos:
                continue
            out[row].append(token)
            if not ended(out[row]):
                keep.append(j)
        if not keep or step == max_new_tokens - 1:
            break
        cache = returned_cache(result)
        if len(keep) < len(live):
            chosen = torch.tensor(keep)  # on the CPU: indexes each layer's cache on whatever device it sits
            cache.batch_select_indices(chosen)
            live, mask, next_position = live[chosen], mask[chosen], next_position[chosen]
        ids = torch.tensor([out[row][-1] for row in live.tolist()])[:, None]  # [live, 1]
        mask = torch.cat([mask, torch.ones(len(live), 1, dtype=mask.dtype)], 1)  # [live, prompt + step + 1]
        positions = next_position[:, None]  # [live, 1]
        next_position = next_position + 1
        cache_kwargs = cache_argument(decoder, cache)
    return out


def greedy_generate(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    ended: Callable[[list[int]], bool] = lambda ids: False,
    batch_size: int = 16,
    eos: frozenset[int] | None = None,
    progress: str | None = None,
) -> list[list[int]]:
    """Greedy continuation ids of each prompt (token id lists), in input order; batches of similar length.

    A row ends at an `eos` id (default: the model's; not kept), when `ended(ids so far)` is true, or
    after max_new_tokens. Interventions active around the call act on the prompt pass as on one row alone.
    Under torchrun each rank runs its batches of the one-process batching and every rank returns all rows.
    """
    if max_new_tokens < 1:
        raise TransferNeuronsError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if any(not p for p in prompts):
        raise TransferNeuronsError("every prompt must tokenise to at least one token")
    eos = eos_ids(lm) if eos is None else eos
    pad = pad_id(lm.tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths: little padding
    batches = shard_batches([order[start : start + batch_size] for start in range(0, len(order), batch_size)])
    out: dict[int, list[int]] = {}
    for idx in tqdm(batches, desc=progress, disable=progress is None or not progress_enabled(), unit="batch"):
        out.update(zip(idx, _greedy_batch(lm, [prompts[i] for i in idx], max_new_tokens, ended, eos, pad)))
    out = gather_items(out)  # under torchrun each rank answered its batches
    return [out[i] for i in range(len(prompts))]
