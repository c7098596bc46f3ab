"""A study under `protocol: paper`: the reasoning stage runs the configured lm-eval task where it can be built,
the built-in elsewhere (and says why), and the report decides the reasoning claim from either."""

from __future__ import annotations

import json
import re

import pytest
from lm_eval_tasks import QUESTIONS, write_prox_tasks
from test_study import make_setup

from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.report import write_report
from transfer_neurons.study import read_manifest, resolve_config, run_study

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
pytest.importorskip("lm_eval")


def test_paper_reasoning_stage_uses_lm_eval_where_the_task_is_configured(tmp_path):
    tasks = write_prox_tasks(tmp_path / "tasks", ("ja",))
    options = {**make_setup(tmp_path), "stages": ["reasoning"], "protocol": "paper",
               "lm_eval_task": {"ja": "tiny_prox_ja"}, "lm_eval_include_path": str(tasks)}
    result = run_study(resolve_config(options), tmp_path / "out")
    assert [s.status for s in result.stages] == ["computed"] * len(result.stages), [(s.name, s.error) for s in result.stages]
    ja = read_manifest(tmp_path / "out" / "reasoning/type1-ja")["summary"]["data"]
    ko = read_manifest(tmp_path / "out" / "reasoning/type1-ko")["summary"]["data"]
    assert ja["protocols"] == {"ja": "lm-eval"} and ja["claim_metric"] == "exact_match"
    assert ja["items"] == sum(len(rows) for rows in QUESTIONS.values())  # sizes.mc unset: every question
    assert ko["protocols"] == {"ko": "built-in"} and ko["claim_metric"] == "acc"
    assert ko["claim_source"].endswith("because no lm-eval task configured for ko")
    write_report(tmp_path / "out")
    claims = json.loads((tmp_path / "out" / "results.json").read_text())["claims"]
    reasoning = next(c for c in claims if c["claim"] == "Type-1 deactivation lowers reasoning accuracy more than controls")
    assert reasoning["units"] == ["ja", "ko"] and reasoning["status"] not in ("not run", "incomplete")
    assert "ja: lm-eval tiny_prox_ja (5-shot, exact_match after custom-extract)" in reasoning["statistic"]
    assert "ko: built-in multiple choice" in reasoning["statistic"]


def test_a_fallback_for_a_task_whose_data_was_missing_is_retried_by_the_next_run(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "broken_ja.yaml").write_text(  # its data file is missing here, as a hub dataset is offline
        f"task: broken_ja\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tmp_path / 'missing.jsonl'}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: exact_match\n", encoding="utf-8")
    options = {**make_setup(tmp_path), "stages": ["reasoning"], "protocol": "paper",
               "lm_eval_task": {"ja": "broken_ja"}, "lm_eval_include_path": str(tasks)}
    first = {s.name: s.status for s in run_study(resolve_config(options), tmp_path / "out", render=False).stages}
    assert first["reasoning/type1-ja"] == "computed"
    assert "lm-eval could not build task broken_ja" in read_manifest(tmp_path / "out/reasoning/type1-ja")["summary"]["retry"]
    again = {s.name: s.status for s in run_study(resolve_config(options), tmp_path / "out", render=False).stages}
    assert again["reasoning/type1-ja"] == "computed"  # tried again: the data may be there now
    assert again["reasoning/type1-ko"] == "cached"  # no task configured for ko: nothing to retry


def test_paper_reasoning_options_are_part_of_the_stage_key(tmp_path):
    tasks = write_prox_tasks(tmp_path / "tasks", ("ja",))
    from transfer_neurons.study.plan import plan

    base = {**make_setup(tmp_path), "stages": ["reasoning"], "lm_eval_include_path": str(tasks)}
    default = next(s for s in plan(resolve_config(base)) if s.name == "reasoning/type1-ja")
    assert "lm_eval_task" not in default.options  # the default protocol's key does not change
    paper = next(s for s in plan(resolve_config({**base, "protocol": "paper"})) if s.name == "reasoning/type1-ja")
    assert paper.options["lm_eval_task"] == "mmlu_prox_lite_{lang}" and paper.options["lm_eval_include_path"] == str(tasks)


@pytest.mark.parametrize("key, value, message", [
    ("lm_eval_task", "prox_{language}", "config.lm_eval_task: 'prox_{language}' may hold {lang} and no other braces"),
    ("lm_eval_task", ["a"], "config.lm_eval_task: expected an lm-eval task name"),
    ("lm_eval_include_path", "/nonexistent/tasks", "config.lm_eval_include_path: expected a folder of lm-eval task YAMLs"),
])
def test_bad_lm_eval_options_are_named(key, value, message):
    with pytest.raises(TransferNeuronsError, match=re.escape(message)):
        resolve_config({key: value})
