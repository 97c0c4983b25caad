"""docs/cli.md is kept true: its reference part is every command's --help, as the code has it now."""

from __future__ import annotations

from click.testing import CliRunner

from syncagent import clidoc
from syncagent.cli import main


def test_the_reference_in_docs_cli_md_is_what_help_says() -> None:
    text = clidoc.DOC.read_text(encoding="utf-8")
    assert clidoc.MARK in text, "run `python -m syncagent.clidoc` to add the generated reference"
    assert text == clidoc.document(text), "docs/cli.md is stale: run `python -m syncagent.clidoc`"


def test_every_command_is_in_the_reference_with_its_real_help() -> None:
    reference = clidoc.reference()
    for path in (["push"], ["quarantine", "retry"], ["mapping", "import"], ["replay", "order"], ["doctor"]):
        assert f"### `syncagent {' '.join(path)}`" in reference
        shown = CliRunner().invoke(main, [*path, "--help"], terminal_width=clidoc.WIDTH).output
        first = next(line for line in shown.splitlines() if line.strip() and not line.startswith("Usage"))
        assert first in reference  # the command's own summary line, as --help prints it


def test_a_changed_help_text_makes_the_page_stale() -> None:
    text = clidoc.DOC.read_text(encoding="utf-8")
    edited = text.replace("Show this message and exit.", "Show this message.", 1)
    assert clidoc.document(edited) == text  # regenerating restores the page
    assert clidoc.document(edited) != edited
