"""report.html and results.json of a small study on a tiny model: every section, every image, no external resource."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import matplotlib.image
import pytest
import torch
from test_study import make_setup

from transfer_neurons.cli import main
from transfer_neurons.report import write_report
from transfer_neurons.report.render import SECTIONS
from transfer_neurons.study import read_manifest, resolve_config, run_study

PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Section ids, image sources, links and scripts of a page."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.external = [], [], []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "table":
            self.tables += 1
        for name in ("src", "href"):
            if attrs.get(name, "").startswith(("http:", "https:", "//")) or tag in ("script", "link", "iframe"):
                self.external.append((tag, attrs))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Every analysis once, on one language and one neuron type each, with the tiny model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    options = make_setup(root)
    one = {kind: ["type1"] for kind in ("similarity", "activations", "alignment", "qa", "reasoning", "dose", "logit_lens")}
    cfg = resolve_config({**options, "langs": ["ja"], "types": {**one, "latent_spaces": ["type2"]}, "dose_counts": [2, 4]})
    result = run_study(cfg, root / "out")
    torch.set_num_threads(threads)
    return root / "out", result


def test_every_stage_ran(study):
    _, result = study
    assert [(s.name, s.status) for s in result.stages if s.status != "computed"] == []
    kinds = {s.kind for s in result.stages}
    assert kinds == {"detect", "similarity", "activations", "alignment", "latent_spaces", "layers", "specificity",
                     "qa", "reasoning", "dose", "logit_lens"}


def test_report_has_every_section_and_only_inline_images_that_decode(study):
    out, _ = study
    page = Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert page.sections == [anchor for anchor, _, _ in SECTIONS]
    assert page.external == []
    assert len(page.images) >= 12
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG)
        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50


def test_claims_table_comes_first_with_a_verdict_per_claim(study):
    out, _ = study
    html = (out / "report.html").read_text(encoding="utf-8")
    claims = html[html.index('<section id="claims">'):html.index('<section id="model">')]
    for text in ("Type-1 deactivation lowers", "own language", "more language-specific", "expected layers",
                 "QA drops more", "reasoning accuracy", "LAPE", "Random neurons", "mutual-kNN", "activation-pattern",
                 "what the paper reports", "rests on"):
        assert text in claims
    # the banner above the table: model, dtype, quantisation, sizes, quick or not
    assert claims.index('class="banner"') < claims.index("<table")
    for text in ("dtype float32", "quantisation none", "scoring sentences", "test pairs", "full sizes (not --quick)"):
        assert text in claims
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [c["number"] for c in results["claims"]] == list(range(1, 11))
    assert {c["status"] for c in results["claims"]} <= {"supported", "not supported", "inconclusive", "not run"}
    assert all(c["status"] != "not run" for c in results["claims"])  # every stage a claim needs ran
    assert all(c["statistic"] and c["paper"] for c in results["claims"])
    assert all(c["units"] for c in results["claims"]) and all("ja" in " ".join(c["units"]) for c in results["claims"])


def test_results_json_holds_config_model_and_every_stage(study):
    out, result = study
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["config"]["langs"] == ["ja"]
    assert results["model"]["num_layers"] == 4 and results["model"]["d_ff"] == 64
    assert set(results["stages"]) == {s.name for s in result.stages}
    assert results["stages"]["detect/type1-ja"]["summary"]["data"]["count"] == 6
    assert results["run"]["stages"][0]["status"] == "computed"


def test_report_command_rerenders_and_marks_missing_stages(study, tmp_path):
    import shutil

    out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "qa/type1-ja")  # as if QA had never finished
    (copy / "run.json").unlink()
    html_path, json_path = write_report(copy)
    results = json.loads(json_path.read_text(encoding="utf-8"))
    assert results["stages"]["qa/type1-ja"]["status"] == "not run"
    assert {c["number"]: c["status"] for c in results["claims"]}[5] == "not run"
    assert "not run" in html_path.read_text(encoding="utf-8")


def test_report_does_not_count_a_stage_whose_files_are_gone_or_cut(study, tmp_path, capsys):
    import shutil

    out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "layers")  # run.json still says "computed"
    (copy / "similarity/type1-ja/similarity.json").unlink()
    cut = copy / "dose/type1-ja" / read_manifest(copy / "dose/type1-ja")["files"][0]  # truncated outside the tool
    cut.write_bytes(cut.read_bytes()[:-7])
    _, json_path = write_report(copy)
    stages = json.loads(json_path.read_text(encoding="utf-8"))["stages"]
    for name in ("layers", "similarity/type1-ja", "dose/type1-ja"):
        assert stages[name]["status"] == "not run" and "files are gone" in stages[name]["error"]
    assert stages["activations/type1-ja"]["status"] == "computed"
    plan = json.loads((copy / "plan.json").read_text(encoding="utf-8"))
    for stage in plan:  # as after a rerun under another knn_k that failed or was interrupted before alignment
        if stage["name"] == "alignment/type1-ja":
            stage["key"] = "0" * 64
    (copy / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    _, json_path = write_report(copy)
    stale = json.loads(json_path.read_text(encoding="utf-8"))["stages"]["alignment/type1-ja"]
    assert stale["status"] == "not run" and stale["summary"] is None and "earlier config" in stale["error"]
    (copy / "config.yaml").write_text("langs: [ja\nseed: 1\n", encoding="utf-8")
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.yaml, line" in err and "not valid YAML" in err


def test_banner_names_model_precision_sizes_and_quick():
    from transfer_neurons.report.render import banner

    stages = {
        "detect/type1-ja": {"kind": "detect", "summary": {"data": {"num_score_sentences": 48, "num_centroid_items": 48,
                                                                   "count": 80}}},
        "similarity/type1-ja": {"kind": "similarity", "summary": {"data": {"pairs": 20}}},
        "qa/type1-ja": {"kind": "qa", "summary": None},  # did not finish: no size
    }
    results = {"config": {"model": "embedded", "langs": ["ja", "ko"], "hub_lang": "en", "controls": ["random", "anti"],
                          "seeds": 2, "quick": True, "dtype": None},
               "model": {"model": "embedded:gemma.gguf", "dtype": "float32", "quantisation": "GGUF Q4_K_M"},
               "stages": stages}
    text = banner(results)
    for part in ("embedded:gemma.gguf", "dtype float32", "quantisation GGUF Q4_K_M", "scoring sentences 48",
                 "neurons per type 80", "test pairs 20", "--quick"):
        assert part in text
    assert "QA questions" not in text
    assert "full sizes" in banner({**results, "config": {**results["config"], "quick": False}})
    assert "intervention <b>zero</b> ·" in text
    scaled = banner({**results, "config": {**results["config"], "intervention": "scale:2"}})
    assert "intervention <b>scale:2</b> (not the paper's zeroing" in scaled


def test_report_says_it_draws_no_figures_in_another_format(study, tmp_path, capsys):
    import shutil

    out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert main(["report", str(copy), "--figure-format", "svg"]) == 0
    assert "report draws no figures" in capsys.readouterr().err
    assert not list(copy.rglob("*.svg"))
