"""Page skipping on its own: which pages a push leaves unparsed, and what it learns from a pass."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncagent.engine.core import ChannelSetup, StepResult, _Ctx
from syncagent.engine.pages import PageSkipper, page_context
from syncagent.journal import Journal
from syncagent.model import Page
from tests.support.fakes import FakeChannel


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "j.db") as j:
        yield j


def ctx(*, plan_only: bool = False, shadow: bool = False) -> _Ctx:
    return _Ctx(ChannelSetup("loja", FakeChannel(), shadow=shadow), StepResult("loja", "products"), plan_only=plan_only)


def skipper(journal: Journal, c: _Ctx, cursor: str | None = None, *, full: bool = False,
            saved: list[str | None] | None = None) -> PageSkipper:
    return PageSkipper(journal, c, "products", "products", cursor, full=full, stable=True,
                       save=(saved if saved is not None else []).append)


def test_a_whole_pass_notes_the_pages_it_met_and_forgets_the_others(journal: Journal) -> None:
    c = ctx()
    context = page_context(c.setup, "products")
    with journal.transaction():
        journal.add_page_digest("loja", "products", "old", context, 5, "c1")
    skip = skipper(journal, c)
    assert skip.whole_pass and skip.known_pages == {"old": (5, "c1")}
    page = Page([], "c2", {"digest": "new"})
    assert skip.meet(page) == "new" and not skip.known(page)
    assert skip.page_to_note(page, "new", 3) == ("new", context, 3, "c2")
    with journal.transaction():
        journal.add_page_digest("loja", "products", "new", context, 3, "c2")
    skip.finish()
    assert journal.page_digests("loja", "products", context) == {"new": (3, "c2")}


def test_a_known_page_and_the_recorded_tail_are_recognised_and_skipped_cursors_saved_once(journal: Journal) -> None:
    c = ctx()
    with journal.transaction():
        journal.save_cursor("loja", "products", "c9")
        journal.set_tail_digest("loja", "products", "tail")
        journal.add_page_digest("loja", "products", "known", page_context(c.setup, "products"), 2, "c3")
    saved: list[str | None] = []
    skip = skipper(journal, c, "c9", saved=saved)
    assert not skip.whole_pass
    parsed: list[str] = []

    def lazy(digest: str, cursor: str | None) -> Page:
        return Page(None, cursor, {"digest": digest, "items": 2}, load=lambda: parsed.append(digest) or ["r"])

    pages = list(skip.parse_needed(iter([lazy("known", "c3"), lazy("other", "c4"), lazy("tail", None),
                                         lazy("tail", "c5")])))
    # the known page and the recorded tail stay unparsed; the tail's bytes in the middle of the feed are not it
    assert parsed == ["other", "tail"] and [p.parsed for p in pages] == [False, True, False, True]
    assert skip.known(pages[0]) and skip.skippable(pages[2]) and not skip.skippable(pages[3])
    last = Page([], None, {"digest": "tail"})
    assert skip.is_tail(skip.unchanged_tail(last)) and not skip.is_tail(skip.unchanged_tail(Page([], "c4", {})))
    skip.skipped_to = "c3"
    skip.save_skipped()
    skip.save_skipped()
    assert saved == ["c3"] and skip.skipped_to is None


def test_full_dry_runs_and_shadow_channels_learn_nothing(journal: Journal) -> None:
    with journal.transaction():
        journal.save_cursor("loja", "products", "c9")
        journal.set_tail_digest("loja", "products", "tail")
    saved: list[str | None] = []
    dry = skipper(journal, ctx(plan_only=True), saved=saved)
    assert dry.tail is None and not dry.whole_pass
    dry.skipped_to = "c1"
    dry.save_skipped()
    assert saved == []
    assert skipper(journal, ctx(), full=True).tail is None  # --full goes by the page digests only
    assert not skipper(journal, ctx(shadow=True)).whole_pass


def test_a_shared_page_is_decoded_and_parsed_once_whichever_threads_read_it() -> None:
    import threading

    calls: list[str] = []

    def decode() -> tuple[str | None, Any]:
        calls.append("decode")
        return "c2", lambda: calls.append("parse") or ["r1", "r2"]

    page = Page(None, None, {"digest": "d"}, decode=decode)
    got: list[list[Any]] = []
    threads = [threading.Thread(target=lambda: got.append(page.records)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [["r1", "r2"]] * 8 and calls == ["decode", "parse"] and page.cursor == "c2"
    known = Page(None, None, {"digest": "k"}, decode=decode)
    known.recognised("c9", 4)  # remembered: never decoded, and its records would still parse if asked
    assert known.cursor == "c9" and known.extra["items"] == 4 and calls == ["decode", "parse"]
