"""Logit lens: per-layer probability mass on input-language vs English tokens, under each condition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analyses.logit_lens import TokenSets, lens_rows, logit_lens, plot_lens
from ..conditions import Condition
from ..detection import Detection, versions
from ..interventions import active_intervention
from ..models.loaded import LoadedModel
from ..states import StateProvider
from ..outputs import save_figure, write_csv, write_json
from .common import Summary, effects_table

SAMPLE_TOKENS = 30  # tokens of each set listed in the JSON, to check the sets by eye


@dataclass
class LensInputs:
    """L2 sentences, the token sets, and the conditions (a detection's, or none alone)."""

    lm: LoadedModel
    lang: str
    texts: Sequence[str]
    data: str  # where the sentences came from
    sets: TokenSets
    conditions: list[Condition]
    det: Detection | None = None
    detection: str | None = None  # the detection folder, for the record
    vocab_data: str | None = None  # the parallel corpus that defined the token sets (Latin-script languages)
    batch_size: int | str = 16
    chunk: int | None = None  # states per unembedding step (None: by memory, batching.logit_rows)
    mode: str = "last"
    seed: int = 0
    states: StateProvider | None = None  # the study's shared states (None: captured here)


def run_logit_lens(inputs: LensInputs, out: Path) -> Summary:
    """logit_lens.csv/.json/.png; the summary's table is the last layer, its text every layer's mean mass."""
    lm, sets, det = inputs.lm, inputs.sets, inputs.det
    result = logit_lens(inputs.states or lm, inputs.texts, inputs.conditions, sets, inputs.batch_size, inputs.chunk,
                        inputs.mode, progress=False)
    rows = lens_rows(result, inputs.seed)
    sample = {name: lm.tokenizer.convert_ids_to_tokens(
        np.flatnonzero(mask)[:: max(1, int(mask.sum()) // SAMPLE_TOKENS)][:SAMPLE_TOKENS].tolist())
        for name, mask in (("l2", sets.l2), ("en", sets.en))}
    meta = {
        "model": lm.name, "language": inputs.lang, "data": inputs.data, "sentences": len(inputs.texts),
        "detection": inputs.detection, "type": det and det.neuron_type, "detection_language": det and det.lang,
        "conditions": [c.label for c in inputs.conditions], "token_rule": sets.rule, "vocab_data": inputs.vocab_data,
        "l2_tokens": int(sets.l2.sum()), "en_tokens": int(sets.en.sum()), "token_samples": sample,
        "head": "final norm -> unembedding -> final logit softcapping if the model has it -> softmax",
        "mode": inputs.mode, "intervention": active_intervention().spec, "versions": versions(),
    }
    write_csv(out / "logit_lens.csv", rows)
    write_json(out / "logit_lens.json", {"meta": meta, "rows": rows})
    what = "no deactivation" if det is None else f"{det.neuron_type} {det.lang} deactivation vs controls"
    title = (f"{lm.name}: logit lens on {len(inputs.texts)} {inputs.lang} sentences (last token), {what}\n"
             f"L2 tokens: {int(sets.l2.sum())} ({sets.rule.split(':')[0]} rule), English tokens: {int(sets.en.sum())}")
    save_figure(out / "logit_lens.png", plot_lens(result, title))
    last = str(lm.view.num_layers - 1)
    names = list(dict.fromkeys(c.name for c in inputs.conditions))
    lines = [f"{inputs.lang}: {int(sets.l2.sum())} L2 tokens, {int(sets.en.sum())} English tokens ({sets.rule})",
             "layer  " + "  ".join(f"{name:>22}" for name in names)]
    for layer in range(lm.view.num_layers):
        cells = []
        for name in names:
            mean = {m: np.mean([result.values[m][c.label][:, layer].mean() for c in inputs.conditions if c.name == name])
                    for m in ("l2_mass", "en_mass")}
            cells.append(f"L2 {mean['l2_mass']:.4f} en {mean['en_mass']:.4f}")
        lines.append(f"{layer:>5}  " + "  ".join(f"{c:>22}" for c in cells))
    last_rows = [r for r in rows if r["layer"] == last]
    tables = [effects_table(last_rows, f"last layer ({last}): token mass, drop = none − condition")] if det else []
    return Summary(
        title=f"logit lens, {inputs.lang} sentences, {what}",
        type=det and det.neuron_type, lang=inputs.lang, figures=["logit_lens.png"], tables=tables,
        data={"last_layer_rows": last_rows}, text="\n".join(lines),
        files=["logit_lens.csv", "logit_lens.json", "logit_lens.png"],
    )
