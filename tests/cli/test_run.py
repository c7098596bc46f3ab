"""`run`'s global options: verbosity (-v also shows each analysis's progress bars) and the figure format."""

import pytest

from transfer_neurons.cli import main, run


@pytest.mark.parametrize("argv, verbose", [(["run"], False), (["run", "-v"], True), (["run", "--verbose"], True),
                                           (["--verbose", "run"], True), (["-q", "run"], False)])
def test_verbose_reaches_the_study(argv, verbose, tmp_path, monkeypatch, capsys) -> None:
    seen = []

    def stop(cfg, out, verbose):
        seen.append(verbose)
        raise KeyboardInterrupt  # stop before any stage, as Ctrl-C would

    monkeypatch.setattr(run, "check_study", lambda cfg, out: None)
    monkeypatch.setattr(run, "run_study", stop)
    assert main([*argv, "--out", str(tmp_path / "s")]) == 130
    assert seen == [verbose]
    assert capsys.readouterr().err.endswith("interrupted; its finished stages are kept; the same command resumes\n")


@pytest.mark.parametrize("flags, expected", [([], "svg"), (["--figure-format", "png"], "png"),
                                             (["--figure-format", "pdf"], "pdf")])
def test_an_explicit_figure_format_overrides_the_configs(flags, expected, tmp_path, monkeypatch) -> None:
    seen = []

    def stop(cfg, out, verbose):
        seen.append(cfg["figure_format"])
        raise KeyboardInterrupt

    config = tmp_path / "study.yaml"
    config.write_text("figure_format: svg\n", encoding="utf-8")
    monkeypatch.setattr(run, "check_study", lambda cfg, out: None)
    monkeypatch.setattr(run, "run_study", stop)
    assert main(["run", "--config", str(config), *flags, "--out", str(tmp_path / "s")]) == 130
    assert seen == [expected]


def test_a_study_error_names_config_keys_not_other_commands_flags(tmp_path, capsys) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"en": "Hi.", "ja": "やあ。"}\n{"en": "Hi.", "ja": "こんにちは。"}\n', encoding="utf-8")
    config = tmp_path / "study.yaml"
    config.write_text(f"strict_pairs: true\nlangs: [ja]\ndata: {{parallel: {pairs}}}\n", encoding="utf-8")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "config.strict_pairs refuses" in err and "--strict-pairs" not in err
