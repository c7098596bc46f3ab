"""lm-eval bridge: clear error without the extra, results table parsing, tiny local tasks end to end, the positions
a generation task deactivates, and per-question scores from the logged samples."""

import json
import sys

import numpy as np
import pytest
import torch
from tiny import save_model, tiny_lm

from transfer_neurons.analyses.lm_eval_bridge import require_lm_eval, result_rows, run_lm_eval
from transfer_neurons.conditions import Condition
from transfer_neurons.detection import Detection, write_detection
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.log import QUIET, configured

ALL_NEURONS = np.array([(layer, i) for layer in range(4) for i in range(64)])
DOCS = [
    {"question": "The cat", "choices": ["sleeps", "flies", "sings"], "answer": 0},
    {"question": "The sky is", "choices": ["blue", "loud"], "answer": 0},
    {"question": "Two plus two is", "choices": ["three", "four"], "answer": 1},
    {"question": "Water is", "choices": ["wet", "dry"], "answer": 0},
]


def test_missing_lm_eval_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # makes `import lm_eval` raise ImportError
    with pytest.raises(TransferNeuronsError, match=r"extra `lm-eval`.*transfer-neurons\[lm-eval\]"):
        require_lm_eval()


def test_result_rows_read_metric_filter_keys_and_stderr():
    results = {"results": {
        "task_a": {"alias": "task_a", "acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.75,
                   "acc_norm_stderr,none": "N/A", "sample_len": 4},
        "task_b": {"exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": 0.05},
    }}
    rows = result_rows(results, Condition("random", np.zeros((3, 2), int), seed=2))
    assert [(r["task"], r["metric"], r["filter"], r["value"], r["stderr"]) for r in rows] == [
        ("task_a", "acc", "none", 0.5, 0.1),
        ("task_a", "acc_norm", "none", 0.75, None),
        ("task_b", "exact_match", "strict-match", 0.25, 0.05),
    ]
    assert all(r["condition"] == "random" and r["seed"] == 2 and r["label"] == "random#2" and r["neurons"] == 3
               for r in rows)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """Two tiny lm-eval tasks over a local JSONL file: multiple choice and plain log-likelihood."""
    pytest.importorskip("lm_eval")
    root = tmp_path_factory.mktemp("tasks")
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (root / "tiny_mc.yaml").write_text(
        "task: tiny_mc\n" + common + "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: answer\nmetric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n", encoding="utf-8")
    (root / "tiny_ll.yaml").write_text(
        "task: tiny_ll\n" + common + "output_type: loglikelihood\ndoc_to_text: '{{question}}'\n"
        "doc_to_target: '{{choices[answer]}}'\nmetric_list:\n"
        "  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n", encoding="utf-8")
    return root


def test_tiny_tasks_under_deactivation(task_dir):
    lm = tiny_lm("llama")
    conditions = [Condition("none", None), Condition("empty", np.zeros((0, 2), np.int64)),
                  Condition("transfer", ALL_NEURONS)]
    rows = run_lm_eval(lm, ["tiny_mc", "tiny_ll"], conditions, batch_size=2, include_path=str(task_dir),
                       include_defaults=False)
    value = {(r["task"], r["metric"], r["label"]): r for r in rows}
    assert set(value) == {(t, m, c) for t, m in (("tiny_mc", "acc"), ("tiny_ll", "perplexity"))
                          for c in ("none", "empty", "transfer")}
    assert value["tiny_mc", "acc", "none"]["stderr"] is not None
    assert 0.0 <= value["tiny_mc", "acc", "none"]["value"] <= 1.0
    # an empty neuron set leaves the model as it is; zeroing every neuron changes the log-likelihoods
    assert value["tiny_ll", "perplexity", "empty"]["value"] == pytest.approx(value["tiny_ll", "perplexity", "none"]["value"])
    assert value["tiny_ll", "perplexity", "transfer"]["value"] != pytest.approx(value["tiny_ll", "perplexity", "none"]["value"])
    # the hooks are gone afterwards: a plain rerun gives the plain value again
    again = run_lm_eval(lm, ["tiny_ll"], conditions[:1], batch_size=2, include_path=str(task_dir), include_defaults=False)
    assert again[0]["value"] == pytest.approx(value["tiny_ll", "perplexity", "none"]["value"])


def test_unknown_task_is_a_clear_error(task_dir):
    lm = tiny_lm("llama")
    with pytest.raises(TransferNeuronsError, match="no task nonexistent_task"):
        run_lm_eval(lm, ["nonexistent_task"], [Condition("none", None)], include_path=str(task_dir),
                    include_defaults=False)


def test_cli_lm_eval_writes_one_table(task_dir, tmp_path):
    import csv

    from transfer_neurons.cli import main

    model = tiny_lm("llama")
    save_model(model, tmp_path / "model")
    scores = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    det = Detection("type1", "en", scores, np.abs(scores), np.zeros((4, 32), np.float32), (0, 1, 2),
                    np.array([[0, 1], [1, 5], [2, 7]]), {"type": "type1", "language": "en", "candidate_layers": [0, 1, 2]})
    write_detection(det, tmp_path / "det")
    out = tmp_path / "out"
    code = main(["lm-eval", "--model", str(tmp_path / "model"), "--detection", str(tmp_path / "det"), "--tasks",
                 "tiny_mc", "--include-path", str(task_dir), "--only-included", "--controls", "anti", "--limit", "3",
                 "--batch-size", "2", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader((out / "lm_eval.csv").open(encoding="utf-8")))
    assert [(r["task"], r["metric"], r["condition"]) for r in rows] == [
        ("tiny_mc", "acc", c) for c in ("none", "transfer", "anti")]
    assert (out / "lm_eval.png").is_file() and json.loads((out / "lm_eval.json").read_text())["limit"] == 3
    for condition in ("none", "transfer", "anti"):  # lm-eval's own results, one folder per condition, by default
        own = json.loads((out / "lm-eval" / condition / "results.json").read_text())
        assert own["config"]["limit"] == 3 and own["config"]["batch_size"] == 2
        value = next(float(r["value"]) for r in rows if r["condition"] == condition)
        assert own["results"]["tiny_mc"]["acc,none"] == pytest.approx(value)  # the CSV holds the same float
    assert main(["lm-eval", "--model", str(tmp_path / "model"), "--detection", str(tmp_path / "det"), "--tasks",
                 "tiny_mc", "--include-path", str(task_dir), "--only-included", "--controls", "", "--limit", "3",
                 "--batch-size", "2", "--out", str(out)]) == 0  # a rerun without the control
    assert sorted(p.name for p in (out / "lm-eval").iterdir()) == ["none", "transfer"]  # anti's old folder is gone


def test_cli_passes_auto_batch_size_samples_and_chat_template(task_dir, tmp_path):
    from transfer_neurons.cli import main

    lm = tiny_lm("llama")
    lm.tokenizer.chat_template = CHAT
    save_model(lm, tmp_path / "model")
    det = Detection("type1", "en", np.zeros((4, 64), np.float32), np.zeros((4, 64), np.float32),
                    np.zeros((4, 32), np.float32), (0, 1, 2), np.array([[0, 1]]),
                    {"type": "type1", "language": "en", "candidate_layers": [0, 1, 2]})
    write_detection(det, tmp_path / "det")
    code = main(["lm-eval", "--model", str(tmp_path / "model"), "--detection", str(tmp_path / "det"), "--tasks",
                 "tiny_mc", "--include-path", str(task_dir), "--only-included", "--controls", "", "--limit", "2",
                 "--batch-size", "auto", "--max-batch-size", "2", "--log-samples", "--apply-chat-template",
                 "--num-fewshot", "1", "--output-path", str(tmp_path / "own"), "--out", str(tmp_path / "out")])
    assert code == 0
    own = json.loads((tmp_path / "own/none/results.json").read_text())
    assert own["config"]["batch_size"] == "auto" and all(1 <= b <= 2 for b in own["config"]["batch_sizes"])
    samples = [json.loads(line) for line in (tmp_path / "own/transfer/samples_tiny_mc.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and samples[0]["arguments"][0][0].startswith("<|user|>")
    assert json.loads((tmp_path / "out/lm_eval.json").read_text())["batch_size"] == "auto"


CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def gen_task(task_dir):
    """A tiny generation task over the same documents, so gen_kwargs have something to act on."""
    data = task_dir / "docs.jsonl"
    (task_dir / "tiny_gen.yaml").write_text(
        f"task: tiny_gen\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: generate_until\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{choices[answer]}}'\n"
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 8\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n", encoding="utf-8")
    return task_dir


def test_pass_through_options_and_lm_evals_own_output(gen_task, tmp_path):
    from transfer_neurons.analyses.lm_eval_bridge import EvalOptions

    lm = tiny_lm("llama")
    lm.tokenizer.chat_template = CHAT
    conditions = [Condition("none", None), Condition("random", ALL_NEURONS[:10], seed=3)]
    options = EvalOptions(batch_size="auto", max_batch_size=4, limit=2, num_fewshot=1, log_samples=True,
                          apply_chat_template=True, gen_kwargs="max_gen_toks=3", bootstrap_iters=10,
                          output_path=tmp_path / "lm-eval")
    rows = run_lm_eval(lm, ["tiny_mc", "tiny_gen"], conditions, include_path=str(gen_task), include_defaults=False,
                       options=options)
    assert {(r["task"], r["label"]) for r in rows} == {(t, c) for t in ("tiny_mc", "tiny_gen") for c in ("none", "random#3")}
    for label in ("none", "random#3"):
        folder = tmp_path / "lm-eval" / label
        results = json.loads((folder / "results.json").read_text())  # lm-eval's own results dict
        assert set(results["results"]) == {"tiny_mc", "tiny_gen"} and "samples" not in results
        assert results["config"]["limit"] == 2 and results["config"]["batch_size"] == "auto"
        assert all(isinstance(b, int) and 1 <= b <= 4 for b in results["config"]["batch_sizes"])  # auto ran, capped
        assert results["n-shot"] == {"tiny_mc": 1, "tiny_gen": 1}
        assert results["config"]["gen_kwargs"] == {"max_gen_toks": 3}
        mine = next(r for r in rows if r["label"] == label and r["task"] == "tiny_mc")
        assert results["results"]["tiny_mc"]["acc,none"] == pytest.approx(mine["value"])  # our table = their JSON
        mc = [json.loads(line) for line in (folder / "samples_tiny_mc.jsonl").read_text().splitlines()]
        gen = [json.loads(line) for line in (folder / "samples_tiny_gen.jsonl").read_text().splitlines()]
        assert len(mc) == len(gen) == 2  # limit
        context = mc[0]["arguments"][0][0]  # (context, continuation) of the first choice
        assert context.startswith("<|user|>") and context.endswith("<|assistant|>")  # the chat template was applied
        assert context.count("<|user|>") == 2  # one few-shot example, as a second turn
        assert gen[0]["arguments"][0][1]["max_gen_toks"] == 3  # gen_kwargs reached the request


def test_chat_template_without_one_is_a_clear_error(task_dir):
    from transfer_neurons.analyses.lm_eval_bridge import EvalOptions

    with pytest.raises(TransferNeuronsError, match="has no chat template"):
        run_lm_eval(tiny_lm("llama"), ["tiny_mc"], [Condition("none", None)], include_path=str(task_dir),
                    include_defaults=False, options=EvalOptions(apply_chat_template=True))


@pytest.mark.parametrize("value, want", [("8", 8), ("auto", "auto"), ("auto:2", "auto:2")])
def test_batch_size_values(value, want):
    from transfer_neurons.analyses.lm_eval_bridge import lm_eval_batch_size

    assert lm_eval_batch_size(value) == want


def test_bad_batch_size_is_named():
    from transfer_neurons.analyses.lm_eval_bridge import lm_eval_batch_size

    with pytest.raises(TransferNeuronsError, match="^batch_size must be a positive integer, 'auto' or 'auto:N'"):
        lm_eval_batch_size("big")


# ---------------------------------------------------------------- the paper's reasoning protocol: per-question scores


def _sample(doc_id, filt, value, metric="exact_match", answer="A"):
    return {"doc_id": doc_id, "filter": filt, "metrics": [metric], metric: value, "filtered_resps": [answer],
            "target": "A"}


def test_sample_scores_pair_questions_by_subtask_and_doc_and_pick_the_first_filter():
    from transfer_neurons.analyses.lm_eval_bridge import sample_scores

    samples = {  # two subtasks of a group, two filters each, documents out of order
        "prox_b": [_sample(1, "strict", 1.0), _sample(1, "loose", 0.0), _sample(0, "strict", 0.0, answer="[invalid]"),
                   _sample(0, "loose", 1.0)],
        "prox_a": [_sample(0, "strict", 1.0), _sample(0, "loose", 1.0)],
    }
    got = sample_scores(samples)
    assert got.metric == "exact_match" and got.filter == "strict"  # the task's first filter, in its own order
    assert got.keys == [("prox_a", 0), ("prox_b", 0), ("prox_b", 1)]
    np.testing.assert_array_equal(got.values, [1.0, 0.0, 1.0])
    assert got.answers == ["A", "[invalid]", "A"]
    loose = sample_scores(samples, filt="loose")
    np.testing.assert_array_equal(loose.values, [1.0, 1.0, 0.0])


def test_sample_scores_refuse_what_is_not_a_per_question_number():
    from transfer_neurons.analyses.lm_eval_bridge import sample_scores

    samples = {"t": [_sample(0, "none", 1.0)]}
    with pytest.raises(TransferNeuronsError, match="no metric 'acc'"):
        sample_scores(samples, metric="acc")
    with pytest.raises(TransferNeuronsError, match="under filters none, not 'strict'"):
        sample_scores(samples, filt="strict")
    corpus_level = {"t": [_sample(0, "none", ["reference", "prediction"], metric="bleu")]}
    with pytest.raises(TransferNeuronsError, match="'bleu' is not a number per question"):
        sample_scores(corpus_level)
    with pytest.raises(TransferNeuronsError, match="logged no samples"):
        sample_scores({"t": []})


def test_task_spec_and_names():
    from transfer_neurons.analyses.lm_eval_bridge import check_task_spec, task_name

    assert task_name("mmlu_prox_lite_{lang}", "ja") == "mmlu_prox_lite_ja"
    assert task_name({"ja": "a_ja"}, "ja") == "a_ja" and task_name({"ja": "a_ja"}, "nl") is None
    assert check_task_spec("fixed_task", "x") == "fixed_task"
    with pytest.raises(TransferNeuronsError, match=r"--lm-eval-task: .*\{lang\} and no other braces"):
        check_task_spec("mmlu_{language}", "--lm-eval-task")
    with pytest.raises(TransferNeuronsError, match="config.lm_eval_task: expected a mapping"):
        check_task_spec({"ja": 3}, "config.lm_eval_task")


def test_buildable_says_why_a_task_cannot_run(tmp_path, monkeypatch):
    from transfer_neurons.analyses.lm_eval_bridge import buildable

    pytest.importorskip("lm_eval")
    (tmp_path / "broken.yaml").write_text(  # its data file does not exist: the data set cannot be loaded
        f"task: broken\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tmp_path / 'missing.jsonl'}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: exact_match\n", encoding="utf-8")
    manager, why = buildable("nonexistent_ja", str(tmp_path), include_defaults=False)
    assert manager is None and why == f"lm-eval knows no task nonexistent_ja (searched also {tmp_path})"
    manager, why = buildable("broken", str(tmp_path), include_defaults=False)
    assert manager is None and why.startswith("lm-eval could not build task broken (") and "\n" not in why
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    assert buildable("broken", str(tmp_path)) == (None, "lm-eval is not installed (pip install 'transfer-neurons[lm-eval]')")


def test_generation_deactivates_prompt_tokens_only(gen_task, monkeypatch):
    """lm-eval generates with left-padded prompts and a cache: the prompt pass (many positions) is deactivated at
    every real token, and no decoding step (one position, cache filled) is deactivated at all."""
    from transfer_neurons import interventions
    from transfer_neurons.analyses.lm_eval_bridge import EvalOptions

    passes = []  # (positions in the pass, deactivated positions, real tokens)
    update = interventions._Positions.update

    def spy(self, module, args, kwargs):
        update(self, module, args, kwargs)
        seq = self.mask.shape[1]
        attention = kwargs.get("attention_mask")
        real = int(attention[:, -seq:].sum()) if isinstance(attention, torch.Tensor) else self.mask.numel()
        passes.append((seq, int(self.mask.sum()), real))

    monkeypatch.setattr(interventions._Positions, "update", spy)
    options = EvalOptions(batch_size=2, limit=3, gen_kwargs={"until": ["@@@"], "max_gen_toks": 4})
    run_lm_eval(tiny_lm("llama"), ["tiny_gen"], [Condition("transfer", ALL_NEURONS)], include_path=str(gen_task),
                include_defaults=False, options=options)
    prompts = [p for p in passes if p[0] > 1]
    steps = [p for p in passes if p[0] == 1]
    assert prompts and steps
    assert all(hit == real > 0 for _, hit, real in prompts)  # every real prompt token, no padding
    assert all(hit == 0 for _, hit, _ in steps)  # generated tokens never


def test_score_task_reads_each_question_and_agrees_with_lm_evals_aggregate(tmp_path):
    pytest.importorskip("lm_eval")
    from lm_eval_tasks import FILTER, QUESTIONS, write_prox_tasks

    from transfer_neurons.analyses.lm_eval_bridge import EvalOptions, score_task, task_manager

    root = write_prox_tasks(tmp_path / "tasks")
    conditions = [Condition("none", None), Condition("transfer", ALL_NEURONS), Condition("random", ALL_NEURONS[::7], 1)]
    options = EvalOptions(batch_size=4, output_path=tmp_path / "own")
    got = score_task(tiny_lm("llama"), "tiny_prox_ja", conditions, task_manager(str(root), False), options)
    assert got.metric == "exact_match" and got.filter == FILTER and got.output_types == ["generate_until"]
    assert got.keys == [(f"tiny_prox_ja_{s}", i) for s in QUESTIONS for i in range(len(QUESTIONS[s]))]
    assert got.targets == [a for s in QUESTIONS for _, a in QUESTIONS[s]]
    assert set(got.n_shot.values()) >= {5} and got.n_shot["tiny_prox_ja_a"] == 5
    for c in conditions:
        values = got.scores[c.label]
        assert set(np.unique(values)) <= {0.0, 1.0} and len(got.answers[c.label]) == len(values)
        for subject in QUESTIONS:  # per-question scores average to lm-eval's own value of each subject
            mine = values[[i for i, (task, _) in enumerate(got.keys) if task.endswith(f"_{subject}")]].mean()
            theirs = next(r["value"] for r in got.rows if r["label"] == c.label and r["task"] == f"tiny_prox_ja_{subject}"
                          and r["metric"] == "exact_match" and r["filter"] == FILTER)
            assert mine == pytest.approx(theirs)
        samples = (tmp_path / "own" / c.label / "samples_tiny_prox_ja_a.jsonl").read_text().splitlines()
        prompt = json.loads(samples[0])["arguments"][0][0]
        assert prompt.count("The answer is (") == 5 and prompt.endswith("Q: 2 + 2 = ?\nA:")  # 5 shots, then the question


def test_cli_checks_its_paths_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from transfer_neurons.cli import common, main

    monkeypatch.setattr(common, "load_model", lambda *a, **k: pytest.fail("the model loaded before the check"))
    scores = np.zeros((4, 64), np.float32)
    write_detection(Detection("type1", "en", scores, scores, np.zeros((4, 32), np.float32), (0,), np.array([[0, 1]]),
                              {"type": "type1", "language": "en", "candidate_layers": [0]}), tmp_path / "det")
    common_args = ["lm-eval", "--detection", str(tmp_path / "det"), "--tasks", "x", "--out", str(tmp_path / "o")]
    assert main([*common_args, "--include-path", str(tmp_path / "none")]) == 2
    assert "--include-path" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main([*common_args, "--output-path", str(tmp_path / "file")]) == 2
    assert "--output-path" in capsys.readouterr().err


def test_quiet_hides_lm_evals_bars_and_notes(task_dir, capfd):
    lm = tiny_lm("llama")
    with configured(QUIET):
        rows = run_lm_eval(lm, ["tiny_ll"], [Condition("none", None)], batch_size=2, include_path=str(task_dir),
                           include_defaults=False)
    assert rows and capfd.readouterr().err == ""
