"""How the library talks: `logging` under the `transfer_neurons` logger, and tqdm progress bars.

Library modules log with `logging.getLogger(__name__)` and never print; results go to files
and to the return values. A program that embeds the library configures the logger as it
configures any other. The command line calls `configure` once: `--quiet` shows errors only
and hides progress bars (also Python warnings and transformers' messages), the default shows
information and warnings, `--verbose` adds debug messages.
"""

from __future__ import annotations

import logging
import sys

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


def configure(verbosity: int = NORMAL, stream=None) -> None:
    """Send the library's log records (and Python warnings) to stream (default stderr) at the verbosity's level."""
    if verbosity not in _LEVELS:
        raise ValueError(f"verbosity must be one of {sorted(_LEVELS)}, got {verbosity!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    logging.captureWarnings(True)
    for name in (NAME, "py.warnings"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_transfer_neurons", False)]:
            logger.removeHandler(old)
        handler._transfer_neurons = True
        logger.addHandler(handler)
        logger.setLevel(_LEVELS[verbosity] if name == NAME else max(_LEVELS[verbosity], logging.WARNING))
        logger.propagate = False
    show_progress(verbosity != QUIET)
    import transformers

    transformers.logging.set_verbosity(logging.ERROR if verbosity == QUIET else logging.WARNING)
    if verbosity == QUIET:
        transformers.logging.disable_progress_bar()
    else:
        transformers.logging.enable_progress_bar()
