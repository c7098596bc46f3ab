"""Library manners: logging under transfer_neurons, progress bars, and --quiet silencing all of it."""

import logging
import warnings

import numpy as np
import pytest
from tiny import SENTENCES, tiny_lm

from transfer_neurons.capture import capture
from transfer_neurons.cli import build_parser
from transfer_neurons.interventions import Mean, capture_under
from transfer_neurons.log import NORMAL, QUIET, VERBOSE, configured, progress_enabled

NEURONS = np.array([[0, 3], [2, 5]])


def noisy_library_work(lm):
    """Library calls that talk: a progress bar, an info record, a library warning and a Python warning."""
    capture(lm, SENTENCES, want=("h",), progress="capture")
    capture_under(lm, SENTENCES[:2], NEURONS, intervention=Mean(SENTENCES[2:]), progress="capture")
    logging.getLogger("transfer_neurons.data").warning("3 rows skipped")
    warnings.warn("a deprecated option", UserWarning)


def test_library_prints_nothing_under_quiet(capfd):
    lm = tiny_lm("llama")
    with configured(NORMAL):
        noisy_library_work(lm)
    out, err = capfd.readouterr()
    # the same work is not silent by default: the bar, the info line and both warnings reach stderr
    assert out == "" and "capture" in err and "mean intervention" in err
    assert "warning: 3 rows skipped" in err and "a deprecated option" in err
    with configured(QUIET):
        assert not progress_enabled()
        noisy_library_work(lm)
    assert capfd.readouterr() == ("", "")
    assert progress_enabled()  # the setting ends with the block


def test_verbose_shows_debug_records(capfd):
    with configured(VERBOSE):
        logging.getLogger("transfer_neurons.anything").debug("a detail")
    assert "a detail" in capfd.readouterr().err
    with configured(NORMAL):
        logging.getLogger("transfer_neurons.anything").debug("a detail")
    assert "a detail" not in capfd.readouterr().err


@pytest.mark.parametrize("argv, verbosity, fmt", [
    (["--quiet", "data", "list"], QUIET, None),  # None: png, or a study config's format
    (["data", "list", "--quiet"], QUIET, None),
    (["-v", "data", "list", "--figure-format", "svg"], VERBOSE, "svg"),
    (["--figure-format", "pdf", "data", "list"], NORMAL, "pdf"),
    (["--figure-format", "pdf", "data", "list", "-q"], QUIET, "pdf"),  # after the command keeps what came before
    (["data", "list"], NORMAL, None),
    (["data", "list", "--figure-format", "png"], NORMAL, "png"),
])
def test_global_options_before_or_after_the_command(argv, verbosity, fmt):
    args = build_parser().parse_args(argv)
    assert (args.verbosity, args.figure_format) == (verbosity, fmt)


def test_bad_figure_format_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["data", "list", "--figure-format", "gif"])
    assert exit_.value.code == 2 and "--figure-format" in capsys.readouterr().err
