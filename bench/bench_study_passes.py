"""Forward passes and wall time of a study: how much model work `run` does, counted, not estimated.

A forward pre-hook on the decoder stack counts every forward call, the sentences (rows) and the
real tokens it processes; the study runs into a fresh temporary folder (nothing cached). Run it
with another checkout's source on PYTHONPATH to compare versions on the same machine:

    python bench/bench_study_passes.py --quick                       # this checkout
    PYTHONPATH=/path/to/old/src python bench/bench_study_passes.py --quick
    python bench/bench_study_passes.py --stages similarity,activations,alignment --langs ja
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import transfer_neurons
from transfer_neurons.models.loading import load_model
from transfer_neurons.study import read_config_file, resolve_config, run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the --quick study (default: the full default study)")
    parser.add_argument("--config", help="a study config file")
    parser.add_argument("--stages", help="comma-separated analyses (default: all)")
    parser.add_argument("--langs", help="comma-separated L2 codes")
    parser.add_argument("--model", default="embedded")
    args = parser.parse_args()
    cfg = resolve_config(read_config_file(args.config) if args.config else {}, quick=args.quick,
                         overrides={"stages": args.stages, "langs": args.langs, "model": args.model})
    lm = load_model(cfg["model"], device=cfg["device"], dtype=cfg["dtype"])
    counts = {"forward_calls": 0, "rows": 0, "tokens": 0}

    def count(module, call_args, kwargs):
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", call_args[0] if call_args else None)
        counts["forward_calls"] += 1
        counts["rows"] += int(ids.shape[0])
        counts["tokens"] += int(mask.sum()) if mask is not None and mask.dim() == 2 else int(ids.numel())

    hook = lm.view.decoder.register_forward_pre_hook(count, with_kwargs=True)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run = run_study(cfg, Path(folder) / "study", lm=lm, render=False)
        seconds = time.perf_counter() - start
    hook.remove()
    print(json.dumps({
        "source": str(Path(transfer_neurons.__file__).parent), "quick": cfg["quick"], "langs": cfg["langs"],
        "stages": len(run.stages), "failed": [s.name for s in run.failed], "seconds": round(seconds, 1), **counts,
    }, indent=1))


if __name__ == "__main__":
    main()
