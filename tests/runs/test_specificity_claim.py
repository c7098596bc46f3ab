"""The specificity claim reads the paper's family label under protocol paper, the language label otherwise."""

from transfer_neurons.runs.specificity import claim_rows


def _row(lang: str, neuron_type: str, label: str) -> dict:
    return {"lang": lang, "type": neuron_type, "label": label, "eta2_min": 0.1}


SHARES = [
    _row("ja", "type1", "language"), _row("ja", "type1", "family:east_asian"),
    _row("ja", "type2", "language"), _row("ja", "type2", "family:east_asian"),
    _row("de", "type1", "language"),  # a language without a family label under the protocol
]


def test_paper_reads_family_rows_where_a_language_has_one():
    chosen = {(r["lang"], r["type"]): r["label"] for r in claim_rows(SHARES, by_family=True)}
    assert chosen == {("ja", "type1"): "family:east_asian", ("ja", "type2"): "family:east_asian", ("de", "type1"): "language"}


def test_default_reads_language_rows_only():
    assert {r["label"] for r in claim_rows(SHARES, by_family=False)} == {"language"}
    assert len(claim_rows(SHARES, by_family=False)) == 3
