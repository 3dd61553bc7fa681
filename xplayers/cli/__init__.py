r"""The ``xplayers`` command: ``train``, ``evaluate``, ``info`` and ``seq2seq``.

Run ``xplayers --help`` (or ``python -m xplayers --help``). With no options,
``xplayers train`` trains a network on the 8x8 digits that ship with
xplayers and prints its test accuracy. The book's chapter-5 experiment is::

    xplayers train --dataset mnist --mnist-dir DIR --network two-layer --hidden 50 \
        --optimizer sgd --lr 0.1 --batch-size 100 --iterations 10000

One module per part: :mod:`~xplayers.cli.parser` (the parser),
:mod:`~xplayers.cli.train`, :mod:`~xplayers.cli.evaluate`,
:mod:`~xplayers.cli.info` and :mod:`~xplayers.cli.seq2seq` (volume 2's
sequence-to-sequence models), one per command.

Errors are reported on one line of standard error, ``xplayers: error: ...``,
with exit status 2 for bad arguments and 1 for anything else that fails
(a missing file, an unusable backend, a diverging run, too little memory);
never a traceback. What the encoding of standard output or error cannot
show (a file name that is not valid UTF-8) is written as backslash escapes.
Warnings (a run that ends no better than chance, no
usable GPU) are lines ``xplayers: warning: ...`` on standard error, and
the exit status stays 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence

from xplayers.cli._common import PROG
from xplayers.cli.parser import build_parser
from xplayers.errors import XplayersError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xplayers`` command and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for bad arguments, 1 when the command fails; the
        reason is printed as one line ``xplayers: error: ...`` on standard
        error.

    Examples
    --------
    >>> from xplayers.cli import main
    >>> main(["train", "--epochs", "0"])
    2
    """
    with _escaping_output():
        try:
            return _run(argv)
        except Exception as exc:  # a library's own error type (zarr, dask...), unforeseen here
            kind = type(exc)
            module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
            _error(RuntimeError(f"unexpected {module}{kind.__qualname__}: {exc}"))
            return 1


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with _warnings_on_stderr():
            return int(args.handler(args))
    except SystemExit as exc:  # --help, --version and argument errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BrokenPipeError:  # the reader went away (`xplayers info | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit cannot fail again
        return 141
    except (XplayersError, OSError) as exc:
        _error(exc)
        return 1
    except MemoryError as exc:
        _error(MemoryError(f"out of memory{f' ({exc})' if str(exc) else ''}; try smaller sizes"))
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """Print warnings as ``xplayers: warning: ...`` lines on stderr.

    Both the ``xplayers`` logger's and those of :mod:`warnings` (such as
    :class:`~xplayers.errors.ModelFileWarning` for a file of an older format),
    which Python would otherwise print over two lines with a source line.
    """
    logger = logging.getLogger("xplayers")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            yield
    finally:
        logger.removeHandler(handler)


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    print(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _error(exc: BaseException) -> None:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text += f": {exc.filename}"
    print(f"{PROG}: error: {text}", file=sys.stderr)


@contextlib.contextmanager
def _escaping_output() -> Iterator[None]:
    """Write what stdout's and stderr's encodings cannot as backslash escapes, in the block.

    A file name that is not valid UTF-8 (the byte 0xff) reaches Python as
    a string with a lone surrogate, which a UTF-8 stream refuses: printing
    ``model saved to ...`` after the save would fail. The streams' error
    handlers are restored after the block.
    """
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None or errors in (None, "backslashreplace"):
            continue
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="backslashreplace")
            changed.append((reconfigure, errors))
    try:
        yield
    finally:
        for reconfigure, errors in changed:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors=errors)
