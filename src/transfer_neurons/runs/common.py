"""What every analysis run shares: its summary, report tables of effects rows, and their text form.

A run writes one analysis's files into one folder and returns a `Summary`; the CLI prints
its text, the study stores it in the stage manifest and the report reads it from there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..conditions import Condition


@dataclass
class Summary:
    """One analysis run: a title, its figures (file names), report tables, numbers, and terminal text."""

    title: str
    figures: list[str] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    type: str | None = None
    lang: str | None = None
    text: str = ""  # what the command prints; not stored in manifests
    files: list[str] = field(default_factory=list)  # every file the run wrote, for the CLI's last line
    retry: str | None = None  # why the result rests on something missing here (a study recomputes it next run)

    def record(self) -> dict:
        """The manifest form the report reads (no terminal text)."""
        out = asdict(self)
        out.pop("text")
        out.pop("files")
        return out


def interval(mean: float, low: float, high: float) -> dict:
    """A table cell holding a value with its 95 % interval (the report prints it as `mean [low, high]`)."""
    return {"mean": mean, "low": low, "high": high}


def effects_table(rows: Sequence[dict], caption: str, pairs: str = "parallel") -> dict:
    """A report table of effects rows: per metric and condition, drop and transfer − control with intervals."""
    ratio = any(r.get("magnitude_ratio") is not None for r in rows)
    out = []
    for r in rows:
        if r.get("pairs", pairs) != pairs:
            continue
        tmc = None if r["transfer_minus_control"] is None else interval(r["transfer_minus_control"], r["tmc_low"], r["tmc_high"])
        cells = [r["metric"], r["condition"], r["mean"], interval(r["drop"], r["drop_low"], r["drop_high"]), r["p_vs_none"], tmc]
        out.append(cells + ([r.get("magnitude_ratio")] if ratio else []))
    columns = ["metric", "condition", "mean", "drop [95% CI]", "p vs none", "transfer − control [95% CI]"]
    return {"caption": caption, "columns": columns + (["|a|·‖v‖ vs transfer"] if ratio else []), "rows": out}


def _fmt(value: Any, spec: str = "+.4f") -> str:
    """A number for a text table, or '-' when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def effects_text(rows: Sequence[dict], title: str) -> str:
    """Effects rows of one metric as an aligned terminal table under a title line."""
    header = ("condition", "seeds", "mean", "drop", "95% CI", "p vs none", "transfer−control", "95% CI", "seed sd")
    ratio = any(r.get("magnitude_ratio") is not None for r in rows)
    table = [header + (("|a|·‖v‖ ratio",) if ratio else ())]
    for r in rows:
        cells = (
            str(r["condition"]), _fmt(r.get("seeds"), "d"), _fmt(r["mean"], ".4f"), _fmt(r["drop"]),
            f"[{_fmt(r['drop_low'])}, {_fmt(r['drop_high'])}]", _fmt(r["p_vs_none"], ".2g"),
            _fmt(r["transfer_minus_control"]),
            "-" if r["tmc_low"] is None else f"[{_fmt(r['tmc_low'])}, {_fmt(r['tmc_high'])}]",
            _fmt(r.get("seed_drop_std"), ".4f"),
        )
        table.append(cells + ((_fmt(r.get("magnitude_ratio"), ".2f"),) if ratio else ()))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in table]
    return "\n".join([title, *lines])


def describe_conditions(conditions: Sequence[Condition]) -> list[dict]:
    """Each condition's label, neuron count and notes, for the JSON record."""
    return [{"label": c.label, "name": c.name, "seed": c.seed,
             "neurons": 0 if c.neurons is None else int(len(c.neurons)), "note": c.note} for c in conditions]
