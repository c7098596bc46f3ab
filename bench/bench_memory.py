"""Peak RAM of detect's scoring for 100 vs 1000 sentences: it must not grow with sentences (issue 5).

Each size runs in its own subprocess on the same model: load it, compute Type-2
centroids (not measured), then measure the peak resident memory of `score_neurons`
above the resident memory just before it. On Linux the kernel's peak counter (VmHWM)
is reset first (/proc/self/clear_refs), elsewhere a 2 ms psutil sampler stands in.
By default the 1000 sentences are the 100 repeated, so both runs have the same
longest batch and only the count differs; --distinct takes 1000 different sentences
(then the longest sentence also differs, which changes the activation memory of a batch).
Both sizes run twice: with glibc's default malloc, whose peak RSS includes freed
temporaries it keeps, and with a fixed mmap threshold, whose peak is the working set.

    python bench/bench_memory.py [--model embedded] [--sizes 100 1000] [--distinct]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import argparse
import gc
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

MIB = 2**20
# glibc's default raises its mmap threshold after frees, so freed temporaries stay in the heap and
# the peak RSS carries 0-350 MiB of allocator noise; a fixed threshold returns them, leaving the working set
ALLOCATORS = {
    "glibc malloc, default settings": {},
    "glibc malloc, MALLOC_MMAP_THRESHOLD_=1 MiB (the working set)": {"MALLOC_MMAP_THRESHOLD_": str(MIB)},
}


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def kernel_peak() -> int:
    """VmHWM, the peak resident set since the last reset, in bytes."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


class Sampler:
    """Polls this process's RSS every 2 ms and keeps the maximum (fallback peak)."""

    def __init__(self) -> None:
        self.process, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def worker(args: argparse.Namespace) -> None:
    """Measure one size and print one JSON line."""
    from bench_detect import model_spec, parallel_sentences
    from transfer_neurons.centroids import language_centroids
    from transfer_neurons.models.loading import load_model
    from transfer_neurons.scoring import score_neurons

    torch.set_num_threads(2)
    lm = load_model(model_spec(args.model))
    base = args.sizes[0]
    _, texts, data = parallel_sentences(args.lang, args.worker if args.distinct else base)
    texts = (texts * (args.worker // len(texts) + 1))[: args.worker]
    centroids = language_centroids(lm, texts[:base], args.batch_size)
    gc.collect()
    before = psutil.Process().memory_info().rss
    exact = reset_peak()
    start = time.perf_counter()
    with Sampler() as sampler:
        result = score_neurons(lm, centroids, texts, args.batch_size, progress=None)
    seconds = time.perf_counter() - start
    peak = kernel_peak() if exact else sampler.peak
    view = lm.view
    print(json.dumps({
        "sentences": result.num_sentences, "distinct": len(set(texts)), "data": data, "model": lm.name,
        "layers_x_dff": view.num_layers * view.d_ff, "rss_before_mib": before / MIB,
        "peak_mib": peak / MIB, "increase_mib": (peak - before) / MIB, "sampled_increase_mib": (sampler.peak - before) / MIB,
        "peak_source": "VmHWM" if exact else "psutil sampler", "seconds": seconds,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded", help="'embedded', 'smollm2' or any --model spec")
    parser.add_argument("--lang", default="ja")
    parser.add_argument("--sizes", type=int, nargs=2, default=[100, 1000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--distinct", action="store_true", help="LARGE different sentences instead of SMALL repeated")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for allocator, env in ALLOCATORS.items():
        print(f"-- {allocator}")
        rows = [run_worker(args, size, env) for size in args.sizes]
        small, large = rows
        print(f"   difference {large['sentences']} - {small['sentences']} sentences: "
              f"{large['increase_mib'] - small['increase_mib']:+.1f} MiB")
    cells = small["layers_x_dff"]
    print(f"{large['model']}: layers x d_ff = {cells:,} (one float64 [layer, d_ff] sum = {cells * 8 / MIB:.2f} MiB); "
          f"keeping per-sentence float64 scores would need {cells * 8 * large['sentences'] / MIB:,.0f} MiB "
          f"for {large['sentences']} sentences")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def run_worker(args: argparse.Namespace, size: int, env: dict[str, str]) -> dict:
    """Measure one size in a fresh process and print its line."""
    cmd = [sys.executable, __file__, "--worker", str(size), "--model", args.model, "--lang", args.lang,
           "--batch-size", str(args.batch_size), "--sizes", *map(str, args.sizes)]
    cmd += ["--distinct"] if args.distinct else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **env}).stdout
    row = json.loads(out.strip().splitlines()[-1])
    print(f"   {row['sentences']:5d} sentences ({row['distinct']} distinct): peak RSS increase "
          f"{row['increase_mib']:6.1f} MiB (RSS before {row['rss_before_mib']:.0f} MiB; {row['peak_source']}; "
          f"sampler {row['sampled_increase_mib']:.1f} MiB; {row['seconds']:.1f} s)", flush=True)
    return row


if __name__ == "__main__":
    main()
