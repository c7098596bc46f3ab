"""Local lm-eval tasks shaped like MMLU-ProX Lite (no downloads): a group of two subjects per language,
5-shot from a local validation split, chain-of-thought generation, a regex filter and exact match."""

from __future__ import annotations

import json
from pathlib import Path

QUESTIONS = {
    "a": [("2 + 2 = ?", "B"), ("3 + 1 = ?", "C"), ("1 + 1 = ?", "A"), ("5 - 1 = ?", "D")],
    "b": [("Red?", "A"), ("Sky?", "B"), ("Sea?", "C")],
}
SHOTS = [(f"Example {i}?", "ABCD"[i % 4]) for i in range(6)]
FILTER = "custom-extract"


def _jsonl(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows), encoding="utf-8")
    return str(path)


def write_prox_tasks(root: Path, langs: tuple[str, ...] = ("ja",), prefix: str = "tiny_prox") -> Path:
    """Task YAMLs `<prefix>_<lang>` (a group of `<prefix>_<lang>_a` and `_b`, 4 + 3 questions) under root; root."""
    root.mkdir(parents=True, exist_ok=True)
    shots = _jsonl(root / "shots.jsonl", SHOTS)
    for lang in langs:
        for subject, rows in QUESTIONS.items():
            test = _jsonl(root / f"{lang}_{subject}.jsonl", rows)
            (root / f"{prefix}_{lang}_{subject}.yaml").write_text(
                f"task: {prefix}_{lang}_{subject}\n"
                "dataset_path: json\n"
                f"dataset_kwargs:\n  data_files:\n    test: {test}\n    validation: {shots}\n"
                "test_split: test\nfewshot_split: validation\n"
                "fewshot_config:\n  sampler: first_n\n  doc_to_target: 'The answer is ({{answer}}).'\n"
                "num_fewshot: 5\noutput_type: generate_until\n"
                "doc_to_text: \"Q: {{question}}\\nA:\"\ndoc_to_target: '{{answer}}'\n"
                f"filter_list:\n  - name: {FILTER}\n    filter:\n"
                "      - function: regex\n        regex_pattern: 'answer is \\(?([ABCD])\\)?'\n"
                "      - function: take_first\n"
                "generation_kwargs:\n  until: ['Q:']\n  do_sample: false\n  max_gen_toks: 6\n"
                "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
                "    ignore_case: true\n",
                encoding="utf-8")
        (root / f"{prefix}_{lang}.yaml").write_text(
            f"group: {prefix}_{lang}\ntask:\n  - {prefix}_{lang}_a\n  - {prefix}_{lang}_b\n"
            f"aggregate_metric_list:\n  - metric: exact_match\n    aggregation: mean\n    weight_by_size: true\n"
            f"    filter_list: {FILTER}\n", encoding="utf-8")
    return root
