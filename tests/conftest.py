"""Fixtures for every test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _syncagent_logger_as_found() -> Iterator[None]:
    """A test that sets up logging (as the CLI does, in-process) leaves the `syncagent` logger as it found it.

    Otherwise whatever runs next in the same process inherits its handlers and level: a daemon reload,
    for one, rebuilds logging only when handlers are there, so its outcome hung on test order.
    """
    root = logging.getLogger("syncagent")
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    root.propagate = propagate
