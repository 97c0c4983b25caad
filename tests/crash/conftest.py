from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash.harness import make_templates

# Crash scenarios kill processes, not machines: a RAM disk keeps their many fsyncs cheap
# without weakening what is tested (a killed process loses nothing the kernel already has).
SHM = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@pytest.fixture(scope="session")
def templates() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="syncagent-templates-", dir=SHM))
    yield make_templates(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workroot() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="syncagent-crash-", dir=SHM))
    yield root
    shutil.rmtree(root, ignore_errors=True)
