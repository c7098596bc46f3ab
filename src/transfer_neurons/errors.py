"""The project's own exception types: every user-facing failure is one of these."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence


class TransferNeuronsError(Exception):
    """Base class: a clear, user-facing message about bad input or an unsupported setup.

    A message about one parameter begins with its library name, held in `option` ("device",
    "top_n"); other parameters it suggests are written as keywords (`device='cpu'`,
    `trust_remote_code=True`) and listed in `mentions`. `shown_as` gives a front end's own names
    for them: the CLI shows its flags (`--device`, `--top-n`), so library errors never name a flag.
    """

    def __init__(self, message: str = "", *, option: str | None = None, mentions: Sequence[str] = ()):
        super().__init__(message)
        self.option = option
        self.mentions = tuple(mentions)

    def shown_as(self, name: Callable[[str], str]) -> str:
        """The message with `option` and each mention under `name(parameter)`: `device 'x'` becomes
        `--device 'x'`, `device='cpu'` `--device 'cpu'` and `trust_remote_code=True` `--trust-remote-code`."""
        text = str(self)
        if self.option is not None:
            text = re.sub(rf"^{re.escape(self.option)}(?![\w-])", lambda _: name(self.option), text)
        for mention in self.mentions:
            keyword = rf"(?<![\w.-]){re.escape(mention)}=(True\b)?"  # a switch (=True) shows as the bare name
            text = re.sub(keyword, lambda m, shown=name(mention): shown if m[1] else f"{shown} ", text)
        return text


class DataError(TransferNeuronsError, ValueError):
    """A data file, bundled set or dataset id that cannot be read as the expected kind."""


class ModelLoadError(TransferNeuronsError):
    """A model path, file or architecture that cannot be loaded or has no adapter."""


class OutputError(TransferNeuronsError, OSError):
    """A result file or folder that cannot be written (not a folder, read-only, disk full); names the path.

    Also an OSError, so callers that tolerate a failed write (a cache entry) keep doing so.
    """
