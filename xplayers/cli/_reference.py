"""The command-line reference of ``docs/cli.md``, written from the parser itself.

Each command's part of the page lies between two markers::

    <!-- cli-reference: xplayers train -->
    ...
    <!-- /cli-reference -->

and holds what :func:`render` writes for it from
:func:`xplayers.cli.parser.build_parser`: the command's description and one
Sphinx ``option`` block per argument, with the help text ``--help`` prints.
``python -m xplayers.cli._reference`` rewrites those parts of the page;
with ``--check`` it only reports whether the page is up to date (exit status
1 when not), which the test suite and the documentation build check, so the
page cannot drift from ``--help``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from xplayers.cli.parser import build_parser

__all__ = ["PAGE", "main", "render", "update"]

#: The page, relative to the root of a source checkout.
PAGE = Path("docs") / "cli.md"
_BLOCK = re.compile(
    r"(<!-- cli-reference: (?P<program>[^>]*?) -->\n).*?(<!-- /cli-reference -->)", re.DOTALL
)
_ENV = re.compile(r"\$[A-Z][A-Z0-9_]*")


def _commands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The program name of `parser` and of each of its subcommands, with their parsers."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _commands(child)


def _invocation(action: argparse.Action, prog: str) -> str:
    """What ``--help`` shows for `action` before its help: ``--lr LR``, ``MODEL``."""
    return argparse.HelpFormatter(prog)._format_action_invocation(action)


def _help(action: argparse.Action, prog: str) -> str:
    """The help text of `action` as ``--help`` prints it, ``%(default)s`` and all expanded."""
    text = action.help or ""
    if "%" in text:
        values = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        values["prog"] = prog
        if action.choices is not None:
            values["choices"] = ", ".join(str(c) for c in action.choices)
        text = text % values
    # `$XPLAYERS_BACKEND` as code: two bare dollars in a paragraph would read as maths
    return _ENV.sub(r"`\g<0>`", " ".join(text.split()))


def render(program: str, parser: argparse.ArgumentParser | None = None) -> str:
    """The reference of one command, ``"xplayers train"`` say, as MyST Markdown.

    Parameters
    ----------
    program : str
        ``"xplayers"`` or ``"xplayers COMMAND"``.
    parser : argparse.ArgumentParser, optional
        The parser of the ``xplayers`` command (default: a new one from
        :func:`~xplayers.cli.parser.build_parser`).

    Returns
    -------
    str
        The command's description, its subcommands with their help, and a
        Sphinx ``option`` block per argument with the text ``--help`` gives
        it (``--help`` itself left out).

    Raises
    ------
    KeyError
        `program` is not the command or one of its subcommands.
    """
    commands = dict(_commands(parser or build_parser()))
    command = commands[program]
    parts = [f"```{{program}} {program}\n```\n"]
    if command.description:
        parts.append(f"{' '.join(command.description.split())}\n")
    for action in command._actions:
        if action.help is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            parts.append(_subcommands(action, program))
            continue
        parts.append(
            f"```{{option}} {_invocation(action, program)}\n{_help(action, program)}\n```\n"
        )
    return "\n".join(parts)


def _subcommands(action: argparse._SubParsersAction[argparse.ArgumentParser], prog: str) -> str:
    """One line per subcommand: its name and the help ``xplayers --help`` gives it."""
    lines = [
        f"- `{prog} {choice.dest}`: {_help(choice, prog)}" for choice in action._choices_actions
    ]
    return "\n".join(lines) + "\n"


def update(text: str, parser: argparse.ArgumentParser | None = None) -> str:
    """`text`, a page, with each marked command's reference rewritten from the parser."""
    parser = parser or build_parser()

    def fill(match: re.Match[str]) -> str:
        body = render(match["program"], parser)
        return f"{match[1]}\n{body}\n{match[3]}"

    return _BLOCK.sub(fill, text)


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the page (default ``docs/cli.md``), or with ``--check`` test that it is current.

    Returns
    -------
    int
        0 when the page is (now) up to date, 1 when ``--check`` finds it is
        not, 2 when the page has no marked part.
    """
    cli = argparse.ArgumentParser(
        prog="python -m xplayers.cli._reference",
        description="Write the command-line reference of the page from the parser.",
    )
    cli.add_argument("page", nargs="?", type=Path, default=PAGE, help="default: %(default)s")
    cli.add_argument("--check", action="store_true", help="only report whether it is current")
    args = cli.parse_args(argv)
    old = args.page.read_text(encoding="utf-8")
    if not _BLOCK.search(old):
        print(f"{args.page}: no '<!-- cli-reference: PROGRAM -->' part", file=sys.stderr)
        return 2
    new = update(old)
    if new == old:
        return 0
    if args.check:
        print(
            f"{args.page} differs from what the parser writes; "
            "run 'python -m xplayers.cli._reference' to rewrite it",
            file=sys.stderr,
        )
        return 1
    args.page.write_text(new, encoding="utf-8")
    print(f"rewrote {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
