"""Detection against the forward-pass floor on a GPU, for models of real shapes built in place (issue 17).

No downloads: each model is random-initialised on the device from a config of a real
shape (speed does not depend on the weights): the embedded Gemma-3-270M, SmolLM2-135M
and LLaMA3-8B (32 layers, d_model 4096, d_ff 14,336, 8 KV heads), each with the vocabulary
cut to the tokenizer at hand. For batch sizes 16, 64 and auto it prints, in seconds per
sentence, the floor (the decoder over length-sorted batches, as capture runs it) and
`score_neurons` for Type-1 and Type-2 centroids (computed beforehand, not timed), their
ratio (target <= 1.25), peak GPU memory of the floor and of detection next to the weights'
size, and how many device-to-host copies one detection made (torch.profiler). With --study
it also times the default study (`transfer-neurons run`) on the embedded model, or on random
weights of its config (--study-model random: the device needs no GGUF file), with seconds
per kind of stage.

    python bench/bench_gpu.py --device cuda [--tokenizer FOLDER] [--shapes gemma3-270m llama3-8b] [--study]
    python bench/bench_gpu.py --device cuda --tokenizer EMBEDDED_FOLDER --shapes --study --study-model random
    python bench/bench_gpu.py --device cpu --smoke     # tiny shapes, a few sentences: checks the script
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from transfer_neurons.batching import resolve_batch_size
from transfer_neurons.capture import make_batches
from transfer_neurons.centroids import language_centroids, shared_centroids
from transfer_neurons.data import load_parallel
from transfer_neurons.log import show_progress
from transfer_neurons.models.loaded import LoadedModel
from transfer_neurons.models.loading import EMBEDDED, convert_gguf, embedded_gguf_path, prepare
from transfer_neurons.outputs import read_manifest
from transfer_neurons.scoring import score_neurons

_GEMMA3_LAYER_TYPES = (["sliding_attention"] * 5 + ["full_attention"]) * 3
SHAPES: dict[str, tuple[str, dict, torch.dtype]] = {
    # name: (model_type, config of the real model without its vocabulary, dtype timed)
    "gemma3-270m": ("gemma3_text", dict(
        hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
        head_dim=256, query_pre_attn_scalar=256, sliding_window=512, layer_types=_GEMMA3_LAYER_TYPES,
        max_position_embeddings=32768, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
    ), torch.float32),
    "smollm2-135m": ("llama", dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        max_position_embeddings=8192, tie_word_embeddings=True,
    ), torch.float32),
    "llama3-8b": ("llama", dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        max_position_embeddings=8192, tie_word_embeddings=False,
    ), torch.bfloat16),
    # --smoke: the same two architectures, tiny
    "tiny-llama": ("llama", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512,
    ), torch.float32),
    "tiny-gemma3": ("gemma3_text", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
        head_dim=16, query_pre_attn_scalar=16, sliding_window=16, layer_types=["sliding_attention"] * 2 + ["full_attention"],
        max_position_embeddings=512,
    ), torch.float32),
}
KINDS = ("type1", "type2")


def model_folder(spec: str) -> str:
    """A folder with a tokenizer (and config), or 'embedded': the embedded model's, converted once into the cache."""
    return str(convert_gguf(embedded_gguf_path())) if spec == EMBEDDED else spec


def load_tokenizer(spec: str):
    """The tokenizer of model_folder(spec), with a padding token."""
    tokenizer = AutoTokenizer.from_pretrained(model_folder(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_model(shape: str, tokenizer, device: str, dtype: torch.dtype | None) -> LoadedModel:
    """A random-initialised model of a real shape, created on the device, vocabulary = the tokenizer's."""
    model_type, options, default_dtype = SHAPES[shape]
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **options,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or default_dtype)
    return prepare(model, tokenizer, f"random {shape}")


def sentences(n: int) -> tuple[list[str], list[str]]:
    """n English–Japanese pairs of the bundled train split, repeated as needed."""
    pairs = load_parallel("parallel", ["en", "ja"], split="train").pairs("en", "ja")
    hub, l2 = list(pairs.hub), list(pairs.l2)
    repeat = n // len(l2) + 1
    return (hub * repeat)[:n], (l2 * repeat)[:n]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], object], repeats: int) -> float:
    """Minimum wall seconds of fn() over repeats, the device's queue drained before and after."""
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def floor(lm: LoadedModel, texts: Sequence[str], batch_size: int) -> None:
    """The decoder stack over length-sorted batches: what nothing that runs the model can beat.

    Tokenising is inside, as it is inside score_neurons, so both timings include it.
    """
    device = lm.view.device
    for batch in make_batches(lm, texts, batch_size):
        lm.view.decoder(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                        position_ids=batch.position_ids.to(device), use_cache=False)


def peak_memory(device: str, fn: Callable[[], object]) -> float | None:
    """Peak GPU memory (GiB) allocated while fn() runs, weights included; None off CUDA."""
    if not device.startswith("cuda"):
        fn()
        return None
    torch.cuda.reset_peak_memory_stats()
    fn()
    return torch.cuda.max_memory_allocated() / 2**30


def device_to_host_copies(device: str, fn: Callable[[], object]) -> int | None:
    """Number of device-to-host memory copies fn() makes (CUDA profiler events); None off CUDA."""
    if not device.startswith("cuda"):
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
    return sum(event.count for event in prof.key_averages() if "DtoH" in event.key)


def bench_shape(shape: str, args: argparse.Namespace, tokenizer) -> None:
    lm = build_model(shape, tokenizer, args.device, args.dtype and getattr(torch, args.dtype))
    view = lm.view
    weights = sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 2**30
    hub, l2 = sentences(args.sentences)
    lengths = [len(ids) for ids in tokenizer(l2)["input_ids"]]
    dtype = str(next(lm.model.parameters()).dtype).removeprefix("torch.")
    print(f"\n== {shape}: {view.num_layers} layers, d_model {view.d_model}, d_ff {view.d_ff}, vocab {len(tokenizer)}, "
          f"{dtype}, weights {weights:.2f} GiB; {len(l2)} ja sentences, {min(lengths)}-{max(lengths)} tokens "
          f"(mean {sum(lengths) / len(lengths):.1f})")
    longest = max(tokenizer(l2)["input_ids"], key=len)
    sizes = {str(b): b for b in args.batches if b != "auto"}
    if "auto" in args.batches:
        start = time.perf_counter()
        sizes["auto"] = resolve_batch_size(lm, "auto", longest, len(l2))
        print(f"   auto batch size: {sizes['auto']} (found in {time.perf_counter() - start:.1f} s)")
    floor(lm, l2[: max(sizes.values())], max(sizes.values()))  # warm-up: kernels, allocator
    cents = {"type1": shared_centroids(lm, hub, l2, max(sizes.values())),
             "type2": language_centroids(lm, l2, max(sizes.values()))}
    print(f"   {'batch':>10} {'floor s/sent':>13} {'type1 s/sent':>13} {'ratio':>6} {'type2 s/sent':>13} {'ratio':>6}"
          f" {'floor GiB':>9} {'peak GiB':>9} {'D->H copies':>11}")
    for label, size in sizes.items():
        base = timed(args.device, lambda: floor(lm, l2, size), args.repeats) / len(l2)
        row = f"   {label + (f' ({size})' if label == 'auto' else ''):>10} {base:13.6f}"
        peaks, copies = [], (None, None)
        for kind in KINDS:
            run = lambda: score_neurons(lm, cents[kind], l2, size, progress=None)  # noqa: E731
            seconds = timed(args.device, run, args.repeats) / len(l2)
            row += f" {seconds:13.6f} {seconds / base:5.2f}x"
            peaks.append(peak_memory(args.device, run))
            if kind == "type1":
                texts = l2[: 4 * size]
                copies = (device_to_host_copies(args.device, lambda: floor(lm, texts, size)),
                          device_to_host_copies(args.device, lambda: score_neurons(lm, cents[kind], texts, size,
                                                                                   progress=None)))
        floor_peak = peak_memory(args.device, lambda: floor(lm, l2, size))
        peak = "n/a" if peaks[0] is None else f"{max(peaks):.2f}"
        row += f" {'n/a' if floor_peak is None else f'{floor_peak:.2f}':>9} {peak:>9} {'n/a' if copies[0] is None else f'{copies[0]} / {copies[1]}':>11}"
        print(row)
    print("   ratio = detect / floor (target <= 1.25); floor GiB, peak GiB = max GPU memory allocated by the floor "
          "and by detection, weights included; D->H copies: device-to-host copies over 4 batches, floor / detection")
    del lm
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()


def study_model(args: argparse.Namespace, folder: str) -> str:
    """The model the study runs: the embedded one, or (--study-model random) random weights of its config.

    'random' builds the model from the config.json in --tokenizer (the embedded model's converted
    folder holds it) and saves it with the tokenizer into `folder`: no GGUF file or download.
    """
    if args.study_model != "random":
        return args.study_model
    source = model_folder(args.tokenizer)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source), dtype=torch.float32)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def stage_seconds(folder: Path) -> dict[str, tuple[int, float]]:
    """(stages, seconds) per stage kind, read from the finished stages' manifests."""
    kinds: dict[str, tuple[int, float]] = {}
    for path in sorted(folder.glob("*/*/manifest.json")) + sorted(folder.glob("*/manifest.json")):
        record = read_manifest(path.parent)
        if record is None:
            continue
        count, seconds = kinds.get(record["kind"], (0, 0.0))
        kinds[record["kind"]] = (count + 1, seconds + record["seconds"])
    return kinds


def time_study(args: argparse.Namespace) -> None:
    """Wall time of the default study (`transfer-neurons run`), and seconds per kind of stage."""
    with tempfile.TemporaryDirectory(prefix="bench-study-") as folder:
        model = study_model(args, str(Path(folder) / "model"))
        out = Path(folder) / "study"
        cmd = [sys.executable, "-m", "transfer_neurons.cli", "run", "--device", args.device, "--dtype", "float32",
               "--out", str(out), "-q"]
        if model != EMBEDDED:
            cmd += ["--model", model]
        if args.smoke:
            cmd.append("--quick")
        print(f"\n== study: {' '.join(cmd[1:])} (at most {args.study_timeout} s)", flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.study_timeout)
            status = f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            done, status = None, f"stopped after {args.study_timeout} s"
        seconds = time.perf_counter() - start
        kinds = stage_seconds(out)
        print(f"   {status}, {seconds:.1f} s wall, {sum(n for n, _ in kinds.values())} stages finished")
        for kind, (count, total) in kinds.items():
            print(f"   {kind:>14}: {count:>2} stages {total:8.1f} s")
        if done is not None and done.returncode:
            print(done.stderr[-2000:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--shapes", nargs="*", choices=tuple(SHAPES), default=["gemma3-270m", "smollm2-135m", "llama3-8b"])
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                        help="weights dtype for every shape (default: float32 for the small shapes, bfloat16 for LLaMA3-8B)")
    parser.add_argument("--batches", nargs="+", default=["16", "64", "auto"], help="batch sizes; 'auto' = batching.py's choice")
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2, help="timings keep the minimum of this many runs")
    parser.add_argument("--tokenizer", default=EMBEDDED, help="a tokenizer folder, or 'embedded' (Gemma 3's; default)")
    parser.add_argument("--study", action="store_true", help="also time the default study")
    parser.add_argument("--study-model", default=EMBEDDED,
                        help="the study's model: 'embedded' (default), 'random' (the --tokenizer folder's config.json "
                             "with random weights: no GGUF needed) or any --model value")
    parser.add_argument("--study-timeout", type=int, default=3600, help="stop the study after this many seconds")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes, 24 sentences, batches 4, 8 and auto, one repeat (and --quick for --study)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.shapes, args.sentences, args.batches, args.repeats = ["tiny-llama", "tiny-gemma3"], 24, ["4", "8", "auto"], 1
    args.batches = [b if b == "auto" else int(b) for b in args.batches]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    print(f"{name}; torch {torch.__version__}; {torch.get_num_threads()} threads")
    show_progress(False)
    tokenizer = load_tokenizer(args.tokenizer)
    for shape in args.shapes:
        bench_shape(shape, args, tokenizer)
    if args.study:
        time_study(args)


if __name__ == "__main__":
    main()
