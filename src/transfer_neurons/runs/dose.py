"""Dose–response: the mid-layer similarity drop against how many neurons are deactivated, and against a scale factor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..analyses.dose import dose_response, plot_dose, plot_scale, ranked_neurons, scale_response, sweep_rows
from ..data import ParallelPairs
from ..detection import Detection, versions
from ..interventions import active_intervention
from ..outputs import save_figure, write_csv, write_json
from ..states import StateProvider
from .common import Summary, effects_table, effects_text


@dataclass
class DoseInputs:
    """The detection, test pairs and the sweeps to run: neuron counts and/or scale factors."""

    states: StateProvider
    model: str
    pairs: ParallelPairs
    det: Detection
    counts: list[int]  # neurons deactivated per step (empty: no count sweep)
    scales: list[float] = field(default_factory=list)  # factors F on the detection's neurons (empty: no scale sweep)
    seeds: int = 3
    mid: tuple[int, ...] = ()
    seed: int = 0
    counts_skipped: list[int] = field(default_factory=list)  # asked-for counts over half the candidates
    detection: str | None = None  # where the detection came from, for the record


def run_dose(inputs: DoseInputs, out: Path) -> Summary:
    """dose.* for the count sweep and dose_scale.* for the scale sweep; the summary shows the centred drop."""
    det, pairs, mid = inputs.det, inputs.pairs, inputs.mid
    meta = {
        "model": inputs.model, "detection": inputs.detection, "type": det.neuron_type, "detection_language": det.lang,
        "language": pairs.lang, "hub_language": pairs.hub_lang, "data": pairs.name, "pairs": len(pairs),
        "seeds": inputs.seeds, "detection_top_n": len(det.neurons), "candidate_layers": list(det.layers),
        "mid_layers": list(mid), "mode": "last", "versions": versions(),
    }
    what = f"{det.neuron_type} {det.lang} detection, top-n {len(det.neurons)}; {len(pairs)} pairs"
    batch = inputs.states.batch_size
    files, figures, tables, text, data = [], [], [], [], {"mid_layers": list(mid)}
    if inputs.counts:
        spec = active_intervention().spec
        result = dose_response(inputs.states, pairs, det, inputs.counts, inputs.seeds, mid, batch, progress=False)
        mid_rows, layer_rows = sweep_rows(result, inputs.seed)
        ranked = ranked_neurons(det, len(det.neurons))
        write_csv(out / "dose.csv", mid_rows)
        write_csv(out / "dose_layers.csv", layer_rows)
        write_json(out / "dose.json", {"meta": {
            **meta, "counts": inputs.counts, "counts_skipped": inputs.counts_skipped, "intervention": spec,
            "ranking": "rank_neurons(scores.npy, candidate layers); counts capped at half the candidate neurons",
            "ranking_matches_neurons_json": bool((ranked == det.neurons).all()),
        }, "mid_layers": mid_rows, "per_layer": layer_rows})
        title = (f"{inputs.model}: {pairs.hub_lang}–{pairs.lang} parallel-pair similarity drop vs neurons "
                 f"deactivated ({spec})\n({what})")
        save_figure(out / "dose.png", plot_dose(result, mid_rows, title, len(det.neurons)))
        files += ["dose.csv", "dose_layers.csv", "dose.json", "dose.png"]
        figures.append("dose.png")
        shown = [{**r, "condition": f"{r['condition']} ×{r['count']}"} for r in mid_rows
                 if r["metric"] == "centred" and r["condition"] != "none"]
        tables.append(effects_table(shown, f"centred cosine, layers {mid[0]}–{mid[-1]}: drop = none − condition"))
        text += [effects_text([r for r in mid_rows if r["count"] == c and r["metric"] == m],
                              f"{c} neurons ({spec}), {m} cosine, layers {mid[0]}-{mid[-1]}")
                 for c in inputs.counts for m in ("raw", "centred")]
        data.update(counts=inputs.counts, mid_rows=mid_rows)
    if inputs.scales:
        result = scale_response(inputs.states, pairs, det, inputs.scales, None, inputs.seeds, mid, batch, progress=False)
        mid_rows, layer_rows = sweep_rows(result, inputs.seed)
        write_csv(out / "dose_scale.csv", mid_rows)
        write_csv(out / "dose_scale_layers.csv", layer_rows)
        write_json(out / "dose_scale.json", {"meta": {
            **meta, "scales": result.scales, "neurons": len(det.neurons),
            "intervention": "scale:F of the detection's neurons (transfer) or as many random neurons of the "
                            "candidate layers; F = 1 is the undeactivated run"},
            "mid_layers": mid_rows, "per_layer": layer_rows})
        title = (f"{inputs.model}: {pairs.hub_lang}–{pairs.lang} parallel-pair similarity drop vs scale factor of the "
                 f"neurons\n({what})")
        save_figure(out / "dose_scale.png", plot_scale(result, mid_rows, title))
        files += ["dose_scale.csv", "dose_scale_layers.csv", "dose_scale.json", "dose_scale.png"]
        figures.append("dose_scale.png")
        shown = [{**r, "condition": f"{r['condition']} ×{r['scale']:g}"} for r in mid_rows
                 if r["metric"] == "centred" and r["condition"] != "none"]
        tables.append(effects_table(shown, f"centred cosine with the neurons scaled by F, layers {mid[0]}–{mid[-1]}"))
        text += [effects_text([r for r in mid_rows if r["scale"] == f and r["metric"] == "centred"],
                              f"{len(det.neurons)} neurons scaled by {f:g}, centred cosine") for f in result.scales]
        data.update(scales=list(result.scales), scale_rows=mid_rows)
    steps = [f"counts {', '.join(map(str, inputs.counts))}"] if inputs.counts else []
    steps += [f"scales {', '.join(f'{f:g}' for f in inputs.scales)}"] if inputs.scales else []
    return Summary(
        title=f"dose–response, {det.neuron_type} {pairs.lang} ({'; '.join(steps)})",
        type=det.neuron_type, lang=pairs.lang, figures=figures, tables=tables, data=data,
        text="\n\n".join(text), files=files,
    )

