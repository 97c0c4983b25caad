from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash.harness import make_templates


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_templates(tmp_path_factory.mktemp("templates"))
