"""How the library talks: `logging` under the `transfer_neurons` logger, and tqdm progress bars.

Library modules log with `logging.getLogger(__name__)` and never print; results go to files
and to the return values. A program that embeds the library configures the logger as it
configures any other. The command line calls `configure` once: `--quiet` shows errors only
and hides progress bars (also Python warnings and transformers' messages), the default shows
information and warnings, `--verbose` adds debug messages.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr

NAME = "transfer_neurons"
QUIET, NORMAL, VERBOSE = -1, 0, 1
_LEVELS = {QUIET: logging.ERROR, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}
_state = {"progress": True}


class _Formatter(logging.Formatter):
    """Information as plain lines; warnings and errors prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def progress_enabled() -> bool:
    """Whether progress bars are shown (False after configure(QUIET))."""
    return _state["progress"]


def show_progress(enabled: bool) -> None:
    """Show or hide every progress bar the library draws."""
    _state["progress"] = bool(enabled)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record (test capture, redirection)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property ignores it
        pass


def configure(verbosity: int = NORMAL, stream=None) -> None:
    """Send the library's log records (and Python warnings) to stream (default stderr) at the verbosity's level,
    and show progress bars unless quiet."""
    if verbosity not in _LEVELS:
        raise ValueError(f"verbosity must be one of {sorted(_LEVELS)}, got {verbosity!r}")
    handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(_Formatter("%(message)s"))
    handler._transfer_neurons = True
    logging.captureWarnings(True)
    for name in (NAME, "py.warnings"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_transfer_neurons", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(_LEVELS[verbosity] if name == NAME else max(_LEVELS[verbosity], logging.WARNING))
        logger.propagate = False
    show_progress(verbosity != QUIET)
    _quiet_transformers(verbosity == QUIET)


def _quiet_transformers(quiet: bool) -> None:
    """transformers' own warnings and download bars: errors only when quiet, its defaults otherwise."""
    import transformers

    transformers.logging.set_verbosity(logging.ERROR if quiet else logging.WARNING)
    if quiet:
        transformers.logging.disable_progress_bar()
    else:
        transformers.logging.enable_progress_bar()


@contextmanager
def configured(verbosity: int = NORMAL, stream=None) -> Iterator[None]:
    """configure() for the block, then the loggers, warnings capture and progress setting as they were."""
    loggers = [logging.getLogger(name) for name in (NAME, "py.warnings")]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    progress = progress_enabled()
    configure(verbosity, stream)
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        logging.captureWarnings(False)
        show_progress(progress)
        _quiet_transformers(False)


class _BarsDropped(io.TextIOBase):
    """A stderr stand-in that drops progress-bar text (carriage returns, cursor moves) and passes other text on."""

    def __init__(self, target):
        self.target = target

    def write(self, text: str) -> int:
        if "\r" not in text and "\x1b[" not in text and text.strip():
            self.target.write(text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()


@contextmanager
def hiding_bars() -> Iterator[None]:
    """Within the block, other libraries' progress bars on stderr are dropped; their other text passes."""
    with redirect_stderr(_BarsDropped(sys.__stderr__ if sys.stderr is None else sys.stderr)):
        yield


@contextmanager
def quiet_libraries(*loggers: str) -> Iterator[None]:
    """When quiet (-q), other libraries' progress bars and their loggers' records below errors are hidden in the block."""
    if progress_enabled():
        yield
        return
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with hiding_bars():
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
