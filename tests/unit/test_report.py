"""Progress display: a live bar on a terminal, throttled plain lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from syncagent.engine import StepResult
from syncagent.report import PushProgress


def step(read: int, sent: int) -> StepResult:
    return StepResult("loja", "products", read=read, sent=sent)


def test_a_terminal_gets_a_live_bar_with_the_counts() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with PushProgress(console) as progress:
        assert progress.live
        progress.update(step(500, 500))
        progress.update(step(1000, 900))
    text = out.getvalue()
    assert "loja/products" in text and "read 1000, sent 900" in text
    assert "\x1b[" in text  # drawn with terminal control codes


def test_a_pipe_gets_plain_lines_at_most_every_few_seconds() -> None:
    out = io.StringIO()
    now = [100.0]
    with PushProgress(Console(file=out, force_terminal=False, width=120), every=5.0, clock=lambda: now[0]) as progress:
        assert not progress.live
        for read in range(500, 5001, 500):  # ten pages within two seconds
            now[0] += 0.2
            progress.update(step(read, read))
        now[0] += 5.0
        progress.update(step(5500, 5500))
    lines = out.getvalue().splitlines()
    assert lines == ["loja/products: read 500, sent 500, unchanged 0", "loja/products: read 5500, sent 5500, unchanged 0"]
    assert "\x1b[" not in out.getvalue()
