"""Where a whole study would make the host wait for a GPU, counted on any machine.

Runs the test suite's tiny study (`tests/test_study.py`: all analyses, two languages) on random
Gemma 3 models of two depths and counts, per line of package code, the calls that on a GPU
wait for the queued kernels (`tests/host_copies.py`'s DeviceWaits: host reads of tensor values
and `.to(device)` copies). A line whose count grows with the depth waits once per layer:

    python bench/bench_study_waits.py                   # this checkout
    PYTHONPATH=/path/to/old/src python bench/bench_study_waits.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from host_copies import DeviceWaits  # noqa: E402
from test_study import make_setup  # noqa: E402
from tiny import byte_tokenizer, tiny_config  # noqa: E402

from transfer_neurons.log import show_progress  # noqa: E402
from transfer_neurons.study import resolve_config, run_study  # noqa: E402


def study_waits(layers: int, root: Path) -> Counter:
    """Waits per (call, file:line) of the tiny study on a random Gemma 3 with `layers` layers."""
    options = make_setup(root)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("gemma3_text", num_hidden_layers=layers))
    model.save_pretrained(options["model"])
    byte_tokenizer().save_pretrained(options["model"])
    with DeviceWaits() as seen:
        run_study(resolve_config(options), root / "study", render=False)
    return Counter(seen.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs=2, default=(4, 8), help="the two model depths (layers)")
    parser.add_argument("--most", type=int, default=15, help="lines to list")
    args = parser.parse_args()
    show_progress(False)
    counts = {}
    for layers in args.depths:
        with tempfile.TemporaryDirectory() as folder:
            counts[layers] = study_waits(layers, Path(folder))
    low, high = (counts[d] for d in args.depths)
    print(f"waits in all: {sum(low.values()):,} at {args.depths[0]} layers, {sum(high.values()):,} at {args.depths[1]}")
    print(f"{'grows':>6} {args.depths[0]:>6} {args.depths[1]:>6}  call at file:line")
    for site in sorted(set(low) | set(high), key=lambda s: (high[s] - low[s], high[s]), reverse=True)[: args.most]:
        print(f"{high[site] - low[site]:>6} {low[site]:>6} {high[site]:>6}  {site[0]} at {site[1]}")


if __name__ == "__main__":
    main()
