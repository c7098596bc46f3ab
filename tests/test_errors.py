"""Library errors name parameters (`device`, `top_n`); the CLI shows them as its flags (`--device`, `--top-n`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

import transfer_neurons
from transfer_neurons import preflight
from transfer_neurons.cli import _subcommands, build_parser, flag_names, main
from transfer_neurons.errors import DataError, ModelLoadError, OutputError, TransferNeuronsError
from transfer_neurons.models.loading import parse_device
from transfer_neurons.scoring import parse_layers

LIBRARY = Path(transfer_neurons.__file__).parent


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def test_option_and_keyword_mentions_take_the_front_ends_names():
    err = TransferNeuronsError("model 'x/adapter' ships code; pass trust_remote_code=True, or give a model folder "
                               "and adapter=FILE", option="model", mentions=("trust_remote_code", "adapter"))
    assert err.shown_as(flag) == ("--model 'x/adapter' ships code; pass --trust-remote-code, or give a model folder "
                                  "and --adapter FILE")
    assert str(err).startswith("model 'x/adapter' ships code; pass trust_remote_code=True")  # the library's words


def test_the_option_is_renamed_only_as_the_first_word():
    err = TransferNeuronsError("layers '9:' selects no layer of a 4-layer model; layers start at 0", option="layers")
    assert err.shown_as(flag) == "--layers '9:' selects no layer of a 4-layer model; layers start at 0"
    assert TransferNeuronsError("top_nx is not the option", option="top_n").shown_as(flag) == "top_nx is not the option"
    assert TransferNeuronsError("no option here").shown_as(flag) == "no option here"


def test_every_error_type_carries_its_option():
    for kind in (TransferNeuronsError, DataError, ModelLoadError, OutputError):
        err = kind("device 'x' is bad", option="device")
        assert err.option == "device" and err.shown_as(flag) == "--device 'x' is bad"
    assert isinstance(DataError("x"), ValueError) and isinstance(OutputError("x"), OSError)


def test_library_messages_name_parameters_not_flags():
    with pytest.raises(ModelLoadError) as caught:
        parse_device("tpu")
    assert str(caught.value) == "device 'tpu' is not supported; choose cpu, cuda, cuda:N or auto"
    assert caught.value.option == "device"
    with pytest.raises(TransferNeuronsError) as caught:
        parse_layers("3", 6)
    assert caught.value.option == "layers" and str(caught.value).startswith("layers '3': expected START:END")


def test_a_study_config_names_its_keys():
    with pytest.raises(TransferNeuronsError) as caught:
        preflight.check_model("embedded", "tpu", {"model": "config.model", "device": "config.device"})
    assert str(caught.value).startswith("config.device 'tpu' is not supported")


def library_files() -> list[Path]:
    """The library's modules outside cli/."""
    return [path for path in sorted(LIBRARY.rglob("*.py")) if path.relative_to(LIBRARY).parts[0] != "cli"]


def raised_calls(path: Path):
    """Each `raise SomeError(...)` call of a file, with its line."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            yield node.lineno, node.exc


def named_parameters() -> set[str]:
    """Every parameter a library error names, as its option or a mention (and `out`, which preflight is given)."""
    names = {"out"}
    for path in library_files():
        for _, call in raised_calls(path):
            for keyword in call.keywords:
                if keyword.arg in ("option", "mentions"):
                    names.update(n.value for n in ast.walk(keyword.value) if isinstance(n, ast.Constant))
    return names


def test_each_named_parameter_is_one_flag_in_every_command():
    parser = build_parser()
    names = flag_names(parser)
    assert names["neuron_type"] == "--type"  # a destination whose flag differs from its name
    flags: dict[str, set[str]] = {}
    for command in _subcommands(parser):
        for action in command._actions:
            flags.setdefault(action.dest, set()).update(f for f in action.option_strings if f.startswith("--"))
    parameters = named_parameters()
    assert {"device", "model", "trust_remote_code", "centroids", "k"} <= parameters  # the scan finds them
    for parameter in parameters:
        assert flags.get(parameter) == {names.get(parameter)}, parameter


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_the_cli_shows_option_and_mention_as_flags(tmp_path, capsys):
    assert main(["detect", "--type", "type1", "--lang", "ja", "--device", "cuda:3", "--out", str(tmp_path / "d")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("transfer-neurons detect: error: --device cuda:3: CUDA is not available here (torch ")
    assert line.endswith("; use --device 'cpu'")


def test_library_errors_name_no_cli_flag():
    """Outside cli/, no raised message names a flag (a `transfer-neurons ...` command to run may)."""
    offenders = []
    for path in library_files():
        for line, call in raised_calls(path):
            text = "".join(n.value for n in ast.walk(call) if isinstance(n, ast.Constant) and isinstance(n.value, str))
            if re.search(r"(?<![\w-])--[a-z]", re.sub(r"`[^`]*`", "", text)):
                offenders.append(f"{path.relative_to(LIBRARY)}:{line}")
    assert offenders == []


@pytest.mark.parametrize("argv, names", [
    (["detect", "--type", "1", "--lang", "ja", "--out", "x"], ["transfer-neurons detect: error:", "--type", "'1'"]),
    (["detect", "--type", "type1", "--out", "x"], ["--lang"]),
    (["neurons", "import"], ["transfer-neurons neurons import: error:"]),
    (["telepathy"], ["transfer-neurons: error:", "'telepathy'"]),
])
def test_usage_errors_are_one_line_too(capsys, argv, names):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert all(name in err for name in names) and err.strip().endswith("--help)")


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    parser = build_parser()
    monkeypatch.setattr("transfer_neurons.cli.build_parser", lambda: parser)
    parser.set_defaults(func=interrupted)
    for command in _subcommands(parser):
        command.set_defaults(func=interrupted)
    assert main(["data", "list"]) == 130
    assert capsys.readouterr().err == "transfer-neurons data: interrupted; no partial output was written\n"
