"""Shared fixtures for the data tests."""

import logging
from collections.abc import Callable

import pytest


@pytest.fixture
def notices(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """A function returning the notices (warnings of the `transfer_neurons` logger) logged so far."""
    caplog.set_level(logging.WARNING, logger="transfer_neurons")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "transfer_neurons" and r.levelno >= logging.WARNING]
