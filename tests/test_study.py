"""`transfer-neurons run` on a tiny saved model: stages, cache keys, reuse, recompute, resume."""

from __future__ import annotations

import importlib
import json
import math
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from tiny import save_model, tiny_lm, write_jsonl

from transfer_neurons.cli import main
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.log import QUIET, configured
from transfer_neurons.study import read_config_file, read_manifest, resolve_config, run_study
from transfer_neurons.study.config import DEFAULTS, write_config
from transfer_neurons.study.plan import plan

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROWS = [
    ("The cat sleeps.", "猫が寝ている。", "고양이가 잔다."),
    ("I like green tea.", "緑茶が好きです。", "나는 녹차를 좋아한다."),
    ("Where is the station?", "駅はどこですか。", "역이 어디예요?"),
    ("It is raining today.", "今日は雨が降っています。", "오늘은 비가 온다."),
    ("My brother is a doctor.", "兄は医者です。", "형은 의사입니다."),
    ("The book is on the table.", "本は机の上にあります。", "책은 탁자 위에 있다."),
    ("We eat rice every day.", "私たちは毎日ご飯を食べます。", "우리는 매일 밥을 먹는다."),
    ("She reads the newspaper.", "彼女は新聞を読む。", "그녀는 신문을 읽는다."),
]
QUESTIONS = [
    ({"en": "What is the capital of France?", "ja": "フランスの首都は？", "ko": "프랑스의 수도는?"},
     {"en": ["Paris"], "ja": ["パリ"], "ko": ["파리"]}),
    ({"en": "What colour is the sky?", "ja": "空は何色？", "ko": "하늘은 무슨 색?"},
     {"en": ["blue"], "ja": ["青"], "ko": ["파란색"]}),
    ({"en": "How many legs has a cat?", "ja": "猫の足は何本？", "ko": "고양이 다리는 몇 개?"},
     {"en": ["four", "4"], "ja": ["4本", "4"], "ko": ["4개", "4"]}),
]


def make_setup(root: Path) -> dict:
    """A tiny saved model and tiny data files; returns a study config (as a config file would hold it)."""
    lm = tiny_lm("gemma3_text")
    save_model(lm, root / "model")
    parallel = write_jsonl(root / "pairs.jsonl", [{"en": e, "ja": j, "ko": k} for e, j, k in ROWS])
    qa = write_jsonl(root / "qa.jsonl", [{"id": f"q{i}", "question": q, "answers": a} for i, (q, a) in enumerate(QUESTIONS)])
    mc = write_jsonl(root / "mc.jsonl", [
        {"id": f"m{i}", "question": q, "options": {k: ["1", "2", "3", "4"] for k in q}, "answer": i % 4}
        for i, (q, _) in enumerate(QUESTIONS)
    ])
    return {
        "model": str(root / "model"), "batch_size": 4, "langs": ["ja", "ko"], "top_n": 6,
        "data": {"parallel": str(parallel), "qa": str(qa), "mc": str(mc)},
        "controls": ["random:2", "magnitude-matched", "anti"], "seeds": 2, "knn_k": 2,
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One finished study on the tiny model, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("study")
    options = {**make_setup(root), "stages": ["similarity"]}
    cfg = resolve_config(options)
    result = run_study(cfg, root / "out")
    return root, options, cfg, result


def manifests(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in out.rglob("manifest.json")}


def test_first_run_computes_every_stage_and_writes_the_study_files(study):
    root, _, cfg, result = study
    out = root / "out"
    assert [s.status for s in result.stages] == ["computed"] * len(result.stages), [(s.name, s.error) for s in result.stages]
    names = [s.name for s in result.stages]
    assert names[:4] == ["detect/type1-ja", "detect/type2-ja", "detect/type1-ko", "detect/type2-ko"]
    assert names[4:] == ["similarity/type1-ja", "similarity/type2-ja", "similarity/type1-ko", "similarity/type2-ko"]
    for name in names:
        manifest = read_manifest(out / name)
        assert manifest is not None and manifest["files"] and manifest["summary"]["title"]
    assert (out / "detect/type1-ja/neurons.json").is_file() and (out / "similarity/type1-ja/similarity_mid.csv").is_file()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved == cfg
    assert (out / "report.html").is_file() and (out / "results.json").is_file()
    assert not list(out.rglob(".*.tmp-*"))


def test_saved_config_reproduces_the_study(study):
    root, _, cfg, _ = study
    again = resolve_config(yaml.safe_load((root / "out/config.yaml").read_text()))
    assert again == cfg


def test_second_run_reuses_every_stage(study, tmp_path, capsys):
    root, _, cfg, _ = study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    before = {name: m["finished"] for name, m in manifests(out).items()}
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("manifest.json")}
    with configured(QUIET):  # -q: no progress bar either
        rerun = run_study(cfg, out, lm=_no_model())
    assert {s.status for s in rerun.stages} == {"cached"}
    assert capsys.readouterr().err == ""
    assert {name: m["finished"] for name, m in manifests(out).items()} == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("manifest.json")} == mtimes


def test_changed_option_recomputes_only_its_dependants(study, tmp_path):
    root, options, _, _ = study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    small = {**options, "langs": ["ja"]}
    assert {s.status for s in run_study(resolve_config(small), out, render=False).stages} == {"cached"}
    unused = run_study(resolve_config({**small, "seeds": 3}), out, render=False)  # random:2 has its own count
    assert {s.status for s in unused.stages} == {"cached"}
    more = {**small, "controls": ["random:3", "magnitude-matched", "anti"]}
    rerun = run_study(resolve_config(more), out, render=False)  # controls change, detection does not
    status = {s.name: s.status for s in rerun.stages}
    assert status == {"detect/type1-ja": "cached", "detect/type2-ja": "cached",
                      "similarity/type1-ja": "computed", "similarity/type2-ja": "computed"}
    cfg = resolve_config({**more, "top_n": 5})  # top-n changes both detections and all below
    status = {s.name: s.status for s in run_study(cfg, out, render=False).stages}
    assert set(status.values()) == {"computed"}
    assert read_manifest(out / "similarity/type1-ko")["inputs"]["options"]["controls"][0] == "random:2"  # untouched


def test_a_stage_missing_or_cutting_a_file_of_its_manifest_is_recomputed(study, tmp_path):
    root, _, cfg, _ = study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    lost = out / "similarity/type2-ko/similarity.csv"
    assert "similarity.csv" in read_manifest(lost.parent)["files"]
    lost.unlink()
    cut = out / "similarity/type1-ja/similarity.json"
    cut.write_bytes(cut.read_bytes()[:-3])
    status = {s.name: s.status for s in run_study(cfg, out, render=False).stages}
    assert [n for n, s in status.items() if s != "cached"] == ["similarity/type1-ja", "similarity/type2-ko"]
    assert status["similarity/type2-ko"] == "computed" and lost.is_file()
    assert json.loads(cut.read_text())  # whole again


def test_running_some_analyses_keeps_the_others_current_results_in_the_report(study, tmp_path):
    root, options, _, _ = study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    similarity = ["similarity/type1-ja", "similarity/type2-ja", "similarity/type1-ko", "similarity/type2-ko"]
    run_study(resolve_config({**options, "stages": ["layers"]}), out, lm=_no_model())
    planned = [entry["name"] for entry in json.loads((out / "plan.json").read_text())]
    assert planned[-4:] == similarity and "layers" in planned
    stages = json.loads((out / "results.json").read_text())["stages"]
    assert {stages[name]["status"] for name in similarity} == {"finished"}
    assert yaml.safe_load((out / "config.yaml").read_text())["stages"] == ["layers", "similarity"]
    outdated = {**options, "stages": ["layers"], "controls": ["random:3", "anti"]}  # similarity's controls change
    run_study(resolve_config(outdated), out, lm=_no_model())
    planned = [entry["name"] for entry in json.loads((out / "plan.json").read_text())]
    assert not set(similarity) & set(planned) and "layers" in planned
    assert yaml.safe_load((out / "config.yaml").read_text())["stages"] == ["layers"]
    run_study(resolve_config({**options, "stages": ["layers"]}), out, lm=_no_model())  # back: similarity is current
    planned = [entry["name"] for entry in json.loads((out / "plan.json").read_text())]
    assert set(similarity) <= set(planned)


def test_resume_after_a_kill_recomputes_only_the_unfinished_stage(study, tmp_path):
    root, _, cfg, _ = study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    (out / "similarity/type1-ko/manifest.json").unlink()  # killed before the manifest was written
    (out / "similarity/type1-ko/similarity.csv").write_text("half a li")
    leftover = out / "similarity/.type2-ja.tmp-deadbeef"  # killed while writing into a temporary folder
    leftover.mkdir()
    (leftover / "similarity.csv").write_text("partial")
    rerun = run_study(cfg, out)
    status = {s.name: s.status for s in rerun.stages}
    assert status["similarity/type1-ko"] == "computed"
    assert [n for n, s in status.items() if s != "cached"] == ["similarity/type1-ko"]
    assert not leftover.exists()
    assert "condition" in (out / "similarity/type1-ko/similarity.csv").read_text().splitlines()[0]
    assert read_manifest(out / "similarity/type1-ko")["key"] == read_manifest(root / "out/similarity/type1-ko")["key"]


def test_cli_run_writes_the_report_and_config(tmp_path, capsys):
    options = make_setup(tmp_path)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({**options, "stages": ["similarity"], "langs": ["ko"]}))
    assert main(["run", "--config", str(config), "--langs", "ja", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "detect/type1-ja" in printed and "computed" in printed and "claims:" in printed
    saved = yaml.safe_load((tmp_path / "out/config.yaml").read_text())
    assert saved["langs"] == ["ja"] and saved["stages"] == ["similarity"]
    assert main(["report", str(tmp_path / "out")]) == 0


def finite_numbers(value: object) -> list[float]:
    """Every float in a JSON value, or an AssertionError naming the first that is not finite."""
    if isinstance(value, float):
        assert math.isfinite(value), value
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [number for item in items for number in finite_numbers(item)]


def test_the_whole_study_runs_with_bfloat16_weights(tmp_path):
    """The paper's large models run in bfloat16: every stage must compute (numpy has no bfloat16)."""
    result = run_study(resolve_config({**make_setup(tmp_path), "dtype": "bfloat16"}), tmp_path / "out")
    assert [s.status for s in result.stages] == ["computed"] * len(result.stages), [(s.name, s.error) for s in result.stages]
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert results["model"]["dtype"] == "bfloat16" and len(finite_numbers(results)) > 1000


def test_saved_config_names_local_files_absolutely_so_it_runs_from_any_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "tasks").mkdir()
    write_jsonl(tmp_path / "data/pairs.jsonl", [{"en": e, "ja": j, "ko": k} for e, j, k in ROWS])
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config({"data": {"parallel": "data/pairs.jsonl", "qa": "hf:data:ja", "mc": "mc"},
                          "lm_eval_include_path": "tasks", "model": "org/not-here"})
    assert cfg["data"] == {"parallel": str(tmp_path / "data/pairs.jsonl"), "qa": f"hf:{tmp_path / 'data'}:ja", "mc": "mc"}
    assert cfg["lm_eval_include_path"] == str(tmp_path / "tasks") and cfg["model"] == "org/not-here"  # a hub id
    write_config(tmp_path / "out/config.yaml", cfg)
    monkeypatch.chdir(tmp_path / "out")
    assert resolve_config(read_config_file("config.yaml")) == cfg


def test_a_chat_template_the_tokenizer_lacks_stops_the_study_before_any_stage(study, tmp_path):
    _, options, _, _ = study
    cfg = resolve_config({**options, "stages": ["qa"], "chat_template": True})
    with pytest.raises(TransferNeuronsError, match="config.chat_template: the tokenizer of .* has no chat template"):
        run_study(cfg, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("manifest.json"))  # no stage finished


def test_bad_config_is_one_clear_error(tmp_path):
    with pytest.raises(TransferNeuronsError, match="unknown option 'langz'"):
        resolve_config({"langz": ["ja"]})
    with pytest.raises(TransferNeuronsError, match="unknown stage"):
        resolve_config({"stages": ["similarity", "telepathy"]})
    with pytest.raises(TransferNeuronsError, match="sizes.test"):
        resolve_config({"sizes": {"test": 0}})
    with pytest.raises(TransferNeuronsError, match="config.item_controls: control spec 'magnitude-matched:2'"):
        resolve_config({"item_controls": ["magnitude-matched:2"]})
    with pytest.raises(TransferNeuronsError, match="dose_seeds"):
        resolve_config({"dose_seeds": 0})
    assert resolve_config({}, quick=True)["langs"] == ["ja", "ko"]
    assert resolve_config({"langs": "nl,it"}, quick=True)["langs"] == ["nl", "it"]


def test_item_analyses_take_item_controls_and_dose_its_own_seeds():
    """QA, reasoning and the logit lens run item_controls (null: controls); dose draws dose_seeds (null: seeds)."""
    by_kind = {stage.kind: stage.options for stage in plan(resolve_config({"langs": ["ja"]}))}
    for kind in ("qa", "reasoning", "logit_lens"):
        assert by_kind[kind]["controls"] == ["random:3", "magnitude-matched", "anti"]
    for kind in ("similarity", "activations", "alignment", "latent_spaces"):
        assert by_kind[kind]["controls"] == ["random", "layer-matched", "magnitude-matched", "anti"]
        assert by_kind[kind]["seeds"] == 5
    assert by_kind["dose"]["seeds"] == 2
    same = {stage.kind: stage.options for stage in plan(resolve_config({"langs": ["ja"], "item_controls": None,
                                                                        "dose_seeds": None, "controls": "random,anti"}))}
    assert same["qa"]["controls"] == same["logit_lens"]["controls"] == same["similarity"]["controls"] == ["random", "anti"]
    assert same["dose"]["seeds"] == 5


def _no_model():
    """A model stand-in that fails if a cached run touches it."""

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("a fully cached run must not use the model")

    return Untouchable()


def test_a_failing_stage_is_recorded_and_only_its_dependants_skip(study, tmp_path, monkeypatch):
    root, options, _, _ = study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    for name in ("detect/type1-ko", "similarity/type1-ko"):  # so that they run again: the first fails
        shutil.rmtree(out / name)
    plan_module = importlib.import_module("transfer_neurons.study.plan")  # `study.plan` is also a function
    real = plan_module.run_detection

    def failing_for_korean(inputs, folder):
        if inputs.lang == "ko":
            raise RuntimeError("no Korean today")
        return real(inputs, folder)

    monkeypatch.setattr(plan_module, "run_detection", failing_for_korean)
    rerun = run_study(resolve_config(options), out)
    status = {s.name: s.status for s in rerun.stages}
    assert status["detect/type1-ko"] == "failed" and status["similarity/type1-ko"] == "skipped"
    assert status["similarity/type1-ja"] == "cached" and status["detect/type2-ko"] == "cached"
    assert next(s.error for s in rerun.stages if s.name == "detect/type1-ko") == "RuntimeError: no Korean today"
    assert (out / "errors/detect__type1-ko.txt").is_file() and not (out / "detect/type1-ko").exists()
    assert len(rerun.failed) == 2 and (out / "report.html").is_file()  # the failed stage and its skipped dependant


def test_each_sentence_set_runs_once_per_condition_across_analyses(study, tmp_path, monkeypatch):
    """similarity, activations, alignment, latent spaces and the logit lens share captures: no (batch, condition)
    runs twice."""
    from transfer_neurons import states as states_module
    from transfer_neurons.models.loading import load_model

    root, options, _, _ = study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)  # detections are cached: only the analyses below run the model
    lm = load_model(options["model"])
    active = ["none"]
    calls: list[tuple] = []
    original = states_module.deactivated

    @contextmanager
    def marked(model, neurons, mode="last"):
        active.append(states_module.neurons_digest(neurons) + mode)
        try:
            with original(model, neurons, mode):
                yield
        finally:
            active.pop()

    monkeypatch.setattr(states_module, "deactivated", marked)
    def rows(tensor):  # a batch's token ids, masks or positions as a hashable value
        return tuple(map(tuple, tensor.tolist()))

    # a last-token pass (after the shared prefixes ran) is told apart by its mask and positions
    hook = lm.view.decoder.register_forward_pre_hook(lambda module, args, kwargs: calls.append((
        rows(kwargs["input_ids"]), rows(kwargs["attention_mask"]), rows(kwargs["position_ids"]), active[-1])),
        with_kwargs=True)
    cfg = resolve_config({**options, "stages": ["similarity", "activations", "alignment", "latent_spaces", "logit_lens"]})
    run = run_study(cfg, out, lm=lm, render=False)
    hook.remove()
    assert {s.status for s in run.stages if s.kind not in ("detect", "similarity")} == {"computed"}, [
        (s.name, s.error) for s in run.stages]
    assert calls and len(calls) == len(set(calls)), "a batch of sentences ran twice under the same condition"
    conditions = {call[-1] for call in calls}
    assert len(conditions) > 4  # none, transfer and the controls of both types and languages


def test_a_new_hub_revision_changes_every_stage_key(monkeypatch):
    """The resolved commit of a hub model (not its id) names the weights, so a moved branch recomputes."""
    from transfer_neurons.models import loading
    from transfer_neurons.study import identity, plan
    from transfer_neurons.study.engine import stage_inputs

    branch = {"main": "a" * 40}
    monkeypatch.setattr(loading, "resolve_hub_commit", lambda repo, revision=None, kind="model": {
        "commit": branch[revision or "main"]})
    cfg = resolve_config({"model": "org/some-model", "stages": ["similarity"]})
    stages = plan(cfg)

    def keys() -> list[str]:
        ident = identity.model_identity(cfg)
        return [identity.digest(stage_inputs(s, ident, {"parallel": "bundled"}, {})) for s in stages]

    before = keys()
    assert before == keys()
    branch["main"] = "b" * 40  # the hub's main branch moved
    assert all(a != b for a, b in zip(before, keys()))


def test_batch_size_auto_reaches_every_stage_as_a_number(study, tmp_path):
    root, options, _, _ = study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    cfg = resolve_config({**options, "batch_size": "auto", "langs": ["ja"], "stages": ["qa", "reasoning", "logit_lens"]})
    run = run_study(cfg, out, render=False)
    assert all(s.status in ("computed", "cached") for s in run.stages), [(s.name, s.error) for s in run.stages]
    assert yaml.safe_load((out / "config.yaml").read_text())["batch_size"] == "auto"  # the saved config keeps it
    item_conditions = ["none", "transfer", "random#0", "random#1", "random#2", "magnitude-matched", "anti"]
    assert [c["label"] for c in json.loads((out / "qa/type1-ja/qa.json").read_text())["conditions"]] == item_conditions
    assert json.loads((out / "logit_lens/type2-ja/logit_lens.json").read_text())["meta"]["conditions"] == item_conditions


def test_protocol_paper_runs_the_papers_qa_and_the_report_says_so(study, tmp_path):
    root, options, _, _ = study
    out = tmp_path / "copy"
    shutil.copytree(root / "out", out)
    cfg = resolve_config({**options, "protocol": "paper", "langs": ["ja"], "stages": ["qa"]})
    assert cfg["dtype"] == "float32" and cfg["qa_max_new_tokens"] is None
    run = run_study(cfg, out)
    assert all(s.status in ("computed", "cached") for s in run.stages), [(s.name, s.error) for s in run.stages]
    record = json.loads((out / "qa/type1-ja/qa.json").read_text())
    assert record["protocol"] == "paper" and record["max_new_tokens"] == 10
    assert record["languages"]["ja"]["example_prompt"].endswith("答え: ")
    assert (out / "qa/type1-ja/qa_scatter_ja.png").is_file() and (out / "qa/type1-ja/qa_scatter.csv").is_file()
    assert "protocol <b>paper</b>" in (out / "report.html").read_text()


def test_the_example_config_names_every_option_with_its_default():
    example = yaml.safe_load((Path(__file__).parents[1] / "examples/study.yaml").read_text(encoding="utf-8"))
    assert set(example) == set(DEFAULTS)
    assert resolve_config(example) == resolve_config({})


def test_patch_is_refused_for_stages_without_pairs():
    with pytest.raises(TransferNeuronsError, match=r"^config\.intervention: patch .* latent_spaces, qa, reasoning, "
                       r"logit_lens read no pairs"):
        resolve_config({"intervention": "patch"})
    assert resolve_config({"intervention": "patch", "stages": ["similarity", "dose"]})["intervention"] == "patch"
