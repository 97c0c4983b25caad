"""The reference part of docs/cli.md, generated from the commands' own ``--help``.

``python -m syncagent.clidoc`` rewrites everything below `MARK` in docs/cli.md; a test fails
when the file and the commands disagree, so the page cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from syncagent.cli import main

MARK = "<!-- generated from --help by `python -m syncagent.clidoc`; do not edit below -->"
DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
WIDTH = 100  # the help is laid out for this width whatever the terminal


def reference() -> str:
    """Every command's --help, in the order `syncagent --help` lists them, groups with their subcommands."""
    parts = ["## Reference: every command's `--help`\n"]
    root = click.Context(main, info_name="syncagent", terminal_width=WIDTH, max_content_width=WIDTH,
                         **main.context_settings)
    parts += _helps(main, root)
    return "\n".join(parts)


def _helps(command: click.Command, ctx: click.Context) -> list[str]:
    path = ctx.command_path
    parts = [f"### `{path}`\n\n```\n{command.get_help(ctx).rstrip()}\n```\n"]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                parts += _helps(sub, click.Context(sub, info_name=name, parent=ctx, terminal_width=WIDTH,
                                                   max_content_width=WIDTH))
    return parts


def document(text: str) -> str:
    """The page with its generated part replaced (appended after `MARK` when the page has none yet)."""
    head = text.split(MARK, 1)[0].rstrip("\n")
    return f"{head}\n\n{MARK}\n\n{reference()}"


def main_() -> int:
    text = DOC.read_text(encoding="utf-8")
    new = document(text)
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print(f"{DOC}: updated")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main_())
