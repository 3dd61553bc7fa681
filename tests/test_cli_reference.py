"""docs/cli.md is what the parser writes: an option cannot change without the page."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from xplayers.cli import _reference as reference
from xplayers.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / reference.PAGE


def _commands() -> dict[str, argparse.ArgumentParser]:
    return dict(reference._commands(build_parser()))


def test_the_page_is_what_the_parser_writes() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert reference.update(text) == text, (
        "docs/cli.md differs from the parser; run 'python -m xplayers.cli._reference'"
    )


def test_the_page_has_a_part_for_every_command() -> None:
    text = PAGE.read_text(encoding="utf-8")
    marked = {m["program"] for m in reference._BLOCK.finditer(text)}
    assert (
        marked
        == set(_commands())
        == {
            "xplayers",
            "xplayers train",
            "xplayers evaluate",
            "xplayers info",
            "xplayers lm-train",
            "xplayers lm-generate",
            "xplayers seq2seq",
        }
    )


@pytest.mark.parametrize("program", ["xplayers", "xplayers train", "xplayers evaluate"])
def test_every_option_is_shown_as_help_shows_it(program: str) -> None:
    """Each argument's invocation (``--network {two-layer,multi,conv}``) and help text."""
    parser = _commands()[program]
    shown = "".join(parser.format_help().split())  # --help wraps lines at spaces and hyphens
    rendered = reference.render(program)
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        invocation = reference._invocation(action, program)
        text = reference._help(action, program)
        assert "".join(invocation.split()) in shown
        assert "".join(text.replace("`", "").split()) in shown  # the page quotes $VARIABLES
        assert f"```{{option}} {invocation}\n{text}\n```\n" in rendered


def test_check_reports_a_stale_page_and_the_rewrite_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "cli.md"
    current = PAGE.read_text(encoding="utf-8")
    stale = current.replace("```{option} --filters N\n", "```{option} --kernels N\n")
    assert stale != current
    page.write_text(stale, encoding="utf-8")
    assert reference.main([str(page), "--check"]) == 1
    assert "differs from what the parser writes" in capsys.readouterr().err
    assert page.read_text(encoding="utf-8") == stale  # --check writes nothing
    assert reference.main([str(page)]) == 0
    assert page.read_text(encoding="utf-8") == current
    assert reference.main([str(page), "--check"]) == 0


def test_a_page_without_markers_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "cli.md"
    page.write_text("# Command-line reference\n", encoding="utf-8")
    assert reference.main([str(page), "--check"]) == 2
    assert "no '<!-- cli-reference: PROGRAM -->' part" in capsys.readouterr().err
