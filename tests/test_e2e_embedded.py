"""`transfer-neurons run --quick` on the real embedded model, end to end (minutes; deselect with -m "not e2e")."""

import json

import pytest

from transfer_neurons.cli import main


@pytest.mark.e2e
def test_quick_study_on_the_embedded_model(tmp_path):
    out = tmp_path / "study"
    assert main(["run", "--quick", "--out", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert '<section id="claims">' in html and "data:image/png;base64," in html
    assert [c["number"] for c in results["claims"]] == list(range(1, 11))
    # every claim's stages ran, and every asked-for language
    assert all(c["status"] in ("supported", "not supported", "inconclusive") for c in results["claims"])
    assert results["model"]["num_layers"] == 18
    assert all(s["status"] == "computed" for s in results["run"]["stages"])
    assert main(["run", "--quick", "--out", str(out)]) == 0  # the rerun reuses every stage
    rerun = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert {s["status"] for s in rerun["stages"]} == {"cached"}
