"""Page skipping: a feed page read again byte for byte, under the same mapping context, is not mapped again.

Two memories, both in the journal, both per (channel, feed):

* the **tail digest**: the feed's last page is read again every cycle (a null cursor keeps the
  previous one); once recorded whole, its digest is kept with the cursor, and a later cycle that
  meets the same bytes counts its records unchanged without mapping them (not with ``--full``);
* the **page digests**: a pass over the whole feed (first sync, ``--full``) notes the digest of
  each page it records whole, with the page's size and next cursor; a later pass skips a page
  whose bytes it meets again under the same *mapping context* (our code, the channel's config,
  its SKU mode), since same bytes give the same records and the same payloads, already recorded.

A source that gives each page's ``digest`` and leaves its body to be decoded on first read
(`Page.decode`) has its known pages counted without decoding them: the engine gives such a page
the cursor it remembers (`Page.recognised`); the source knows nothing of what the engine
remembers. `PageSkipper.parse_needed` parses the others in the read-ahead thread.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from syncagent.engine.core import ChannelSetup, _Ctx
from syncagent.journal import Journal
from syncagent.model import Page


class PageSkipper:
    """What one push of one feed knows of its pages, and what it learns of them while it runs."""

    def __init__(self, journal: Journal, ctx: _Ctx, entity: str, cursor_key: str, cursor: str | None, *,
                 full: bool, stable: bool, save: Callable[[str | None], None]) -> None:
        self.journal, self.channel, self.entity, self.cursor_key = journal, ctx.name, entity, cursor_key
        self.plan_only, self.shadow = ctx.plan_only, ctx.setup.shadow
        # the last page, skipped when its digest says it did not change since it was recorded whole
        # (not with --full, whose whole pass goes by the page digests, which also know the mapping context)
        self.tail = None if full or ctx.plan_only else journal.tail_digest(ctx.name, cursor_key)
        self.context = page_context(ctx.setup, entity) if stable else ""
        self.known_pages = journal.page_digests(ctx.name, entity, self.context) if stable else {}
        self.whole_pass = stable and cursor is None and not ctx.plan_only and not ctx.setup.shadow
        self.seen: set[str] = set()  # the digests a whole pass met
        self.skipped_to: str | None = None  # the cursor after known pages skipped, not yet saved
        self._save = save

    def skippable(self, page: Page) -> bool:
        """A page counted unchanged without its records: known from a whole pass, or the recorded tail."""
        return self.known(page) or (page.cursor is None and self.is_tail(page.extra.get("digest")))

    def parse_needed(self, pages: Iterator[Page]) -> Iterator[Page]:
        """The pages of a feed, each parsed here unless it will be skipped (run by the read-ahead thread)."""
        try:
            for page in pages:
                remembered = self.known_pages.get(page.extra.get("digest"))  # type: ignore[arg-type]
                if remembered is not None:  # its bytes were recorded whole: its cursor is known, nothing decoded
                    items, next_cursor = remembered
                    page.recognised(next_cursor or None, items)
                elif not self.skippable(page):
                    page.records  # noqa: B018 - parsed now, in this thread, not in the caller's
                yield page
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    def meet(self, page: Page) -> str | None:
        """Note a page read; returns its digest (None when the source gives none)."""
        digest = page.extra.get("digest")
        if self.whole_pass and digest is not None:
            self.seen.add(digest)
        return digest

    def known(self, page: Page) -> bool:
        """A page recorded whole by an earlier pass, under the same mapping context."""
        return page.extra.get("digest") in self.known_pages

    def unchanged_tail(self, page: Page) -> str | None:
        """The digest of the feed's last page, if this is it; `is_tail` says whether it is the one recorded."""
        return page.extra.get("digest") if page.cursor is None else None

    def is_tail(self, digest: str | None) -> bool:
        return digest is not None and digest == self.tail

    def save_skipped(self) -> None:
        """Move the cursor past the known pages skipped since the last page recorded."""
        if self.skipped_to is not None and not self.plan_only:
            self._save(self.skipped_to)
        self.skipped_to = None

    def page_to_note(self, page: Page, digest: str | None, items: int) -> tuple[str, str, int, str | None] | None:
        """What to note of a page once it is recorded whole (a whole pass only)."""
        if self.whole_pass and digest is not None:
            return (digest, self.context, items, page.cursor)
        return None

    def finish(self) -> None:
        """The feed read to its end: pages a whole pass did not meet any more are forgotten."""
        if self.whole_pass:
            with self.journal.transaction():
                self.journal.keep_page_digests(self.channel, self.entity, self.context, self.seen)


def page_context(setup: ChannelSetup, entity: str) -> str:
    """What a page's payloads depend on besides its bytes: our code and the channel's config."""
    return hashlib.sha256(f"{_code_digest()}|{setup.config_digest}|{setup.sku_mapping}|{entity}"
                          .encode()).hexdigest()


@functools.cache
def _code_digest() -> str:
    """A digest of the agent's own code: after an upgrade every page is mapped again once."""
    digest = hashlib.sha256()
    root = Path(__file__).parents[1]  # the syncagent package
    for path in sorted(root.rglob("*.py")):
        if "simulators" not in path.parts:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _count_unparsed(ctx: _Ctx, page: Page) -> None:
    """A page the connector left unparsed (the engine knew it): its items count as read and unchanged."""
    items = int(page.extra.get("items") or 0)
    ctx.result.read += items
    ctx.result.unchanged += items
