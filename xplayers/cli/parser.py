"""The argument parser of the ``xplayers`` command: one subcommand per module."""

from __future__ import annotations

import argparse
from typing import NoReturn

from xplayers._version import __version__
from xplayers.cli import evaluate, info, train
from xplayers.cli._common import PROG

__all__ = ["COMMANDS", "Parser", "build_parser"]

#: The subcommands, each a module with ``add_parser(sub)`` and ``run(args)``.
COMMANDS = {"train": train, "evaluate": evaluate, "info": info}


class Parser(argparse.ArgumentParser):
    """An argument parser that reports errors on one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``xplayers: error: MESSAGE`` and exit with status 2."""
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``xplayers`` command.

    Each parsed namespace carries ``handler``, the ``run`` function of its
    command.
    """
    parser = Parser(
        prog=PROG,
        description="Train and evaluate the networks of Deep Learning from Scratch "
        "on any array backend.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in COMMANDS.values():
        module.add_parser(sub).set_defaults(handler=module.run)
    return parser
