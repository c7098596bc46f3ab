"""`demo`: per-layer en–L2 similarity of bundled test pairs; bad --langs or --pairs refused before the model loads."""

import pytest
from tiny import save_model, tiny_lm

from transfer_neurons.cli import common, main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_model(tiny_lm("llama"), tmp_path_factory.mktemp("demo") / "model")


def test_demo_prints_one_row_per_layer_for_each_language(model, capsys):
    assert main(["demo", "--model", str(model), "--langs", "ja,ko", "--pairs", "4", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "en–ja, 4 pairs" in out and "en–ko, 4 pairs" in out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3] * 2 and all(len(r) == 5 for r in rows)


@pytest.mark.parametrize("options, says", [(["--langs", "ja,en"], "--langs 'ja,en'"),
                                           (["--langs", "xx"], "no 'xx' sentences"),
                                           (["--langs", "ja", "--pairs", "1"], "--pairs 1")])
def test_bad_options_are_refused_before_the_model_loads(model, options, says, capsys, monkeypatch):
    monkeypatch.setattr(common, "load_model", lambda *a, **k: pytest.fail("the model loaded before the check"))
    assert main(["demo", "--model", str(model), *options]) == 2
    assert says in capsys.readouterr().err
