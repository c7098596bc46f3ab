"""Files of options a user writes by hand (study configs, architecture adapters): YAML, JSON or TOML.

One reader, so every such file fails the same way: one line naming the file, the line (and column
where the parser knows it) and what was wrong.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import yaml

from .errors import TransferNeuronsError

FORMATS = {".json": "JSON", ".toml": "TOML"}  # any other suffix is read as YAML


def read_options(path: str | Path, what: str, option: str,
                 error: type[TransferNeuronsError] = TransferNeuronsError) -> dict:
    """The top-level mapping of an options file (an empty file is {}); `what` names the file in
    errors ("config"), `option` the parameter that gave its path; failures raise `error`."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower(), "YAML")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{what} {path}: cannot read it ({err.strerror or err})", option=option) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{what} {path}, line {line}: not valid UTF-8; re-save the file as UTF-8", option=option) from None
    try:
        loaded = _parse(text, fmt)
    except (ValueError, yaml.YAMLError, RecursionError) as err:  # JSON and TOML errors are ValueErrors
        raise error(f"{what} {path}{_where(err)}: not valid {fmt} ({_problem(err)})", option=option) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise error(f"{what} {path}: expected a mapping of {what} fields at the top level, got {type(loaded).__name__}",
                    option=option)
    return loaded


def _parse(text: str, fmt: str) -> object:
    """The document in `text`, read as `fmt`."""
    if fmt == "JSON":
        return json.loads(text)
    if fmt == "TOML":
        return tomllib.loads(text)
    return yaml.safe_load(text)


def _where(err: Exception) -> str:
    """", line L, column C" where the parser's error knows the position, else ""."""
    mark = getattr(err, "problem_mark", None)  # yaml
    if mark is not None:
        return f", line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(err, json.JSONDecodeError):
        return f", line {err.lineno}, column {err.colno}"
    return ""  # tomllib says the position in its message


def _problem(err: Exception) -> str:
    """The parser's complaint on one line, without the position _where already gives."""
    if isinstance(err, yaml.MarkedYAMLError):
        text = "; ".join(part for part in (err.context, err.problem) if part)
    elif isinstance(err, json.JSONDecodeError):
        text = err.msg
    elif isinstance(err, RecursionError):
        text = "nested too deeply"
    else:
        text = str(err)
    return " ".join(text.split())
