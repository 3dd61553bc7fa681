"""Atomic file writes, and the check of what one will need, made before the work.

:func:`atomic_writer` writes every file xplayers saves (model files,
checkpoints, learning-curve plots, the book networks' ``save_params``): a
new temporary file beside the target, synced, renamed over the target with
:func:`os.replace`, the directory synced. :func:`writable_file` checks what
that rename will need before a long run starts. Both are re-exported by
:mod:`xplayers.io`.
"""

from __future__ import annotations

import array
import contextlib
import os
import re
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xplayers._validation import fail

if sys.platform != "win32":  # a live writer holds a lock on its temporary file
    import fcntl

__all__ = ["atomic_writer", "writable_file"]

_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{12}\.tmp")
# what a temporary's name adds to the target's: ".", "." and 12 hex digits, ".tmp"
_TEMPORARY_EXTRA = 18
# the longest file name most file systems allow, when the system does not say
_NAME_MAX = 255
# Linux inode flags (FS_IOC_GETFLAGS, _IOR('f', 1, long)): a file that is
# immutable or append-only cannot be replaced, not even by root
_FS_IOC_GETFLAGS = (2 << 30) | (array.array("l").itemsize << 16) | (ord("f") << 8) | 1
_FS_IMMUTABLE_FL = 0x10
_FS_APPEND_FL = 0x20
_BSD_FLAGS = stat.UF_IMMUTABLE | stat.SF_IMMUTABLE | stat.UF_APPEND | stat.SF_APPEND
# the permission bits a saved file keeps from the file it replaces: read and
# write only (no set-user-ID, set-group-ID, sticky or execute bit)
_KEPT_MODE = 0o666


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[IO[bytes]]:
    """Yield a file whose content replaces `target` only once fully written and synced.

    The temporary file ``.NAME.<random>.tmp`` is created next to the target
    with ``O_EXCL`` (so :func:`os.replace` is an atomic rename on one file
    system) and mode ``0o666`` (so the umask applies, as for any new file,
    unlike ``mkstemp``'s ``0o600``); if the target exists, its read and
    write bits are kept instead (never its set-user-ID, set-group-ID,
    sticky or execute bits). ``NAME`` is cut short where the whole name
    would exceed the file system's limit, so any legal target name can be
    written. On POSIX the writer holds an exclusive ``flock`` on its
    temporary file until done, so that the stale temporaries of killed
    writers (whose locks died with them) can be told from live ones and are
    removed here.

    Parameters
    ----------
    target : pathlib.Path
        The file to write. Check it with :func:`writable_file` before work
        whose result it will hold.

    Yields
    ------
    file
        A binary file open for writing; on an exception in the block the
        temporary is removed and `target` is left as it was.
    """
    directory = target.parent
    _remove_stale_temporaries(target)
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode) & _KEPT_MODE
    except OSError:
        mode = None
    fd, tmp = _create_temporary(target)
    try:
        if mode is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, target)  # still locked: a cleaner never sees it unlocked
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def writable_file(where: str, arg: str, path: str | os.PathLike[str]) -> Path:
    """Check now what saving to `path` will need, before the work that produces it; return it.

    :func:`atomic_writer` (so :func:`save`, :func:`save_checkpoint` and
    the training loop's checkpoints and plots) writes a temporary file next
    to the target and renames it over the target. Checked here: the path is
    not a directory and its directory exists; its name fits the file
    system's limit; a temporary file with the name the save will use can be
    created there (created and removed, so a read-only place or file system
    is refused now, not after training), in a directory that is not
    immutable or append-only (Linux inode flags: an append-only directory
    lets files be created but not renamed); and an existing target can be
    replaced by a rename: it is not immutable or append-only (Linux inode
    flags, or ``st_flags`` on BSD and macOS) and not another user's file in
    a sticky directory such as ``/tmp``.

    Parameters
    ----------
    where, arg : str
        The function and argument named in the error message.
    path : str or os.PathLike
        The file a save will write.

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    xplayers.errors.LayerInputError
        The path cannot be written; the message says why.

    Examples
    --------
    >>> from xplayers.io import writable_file
    >>> try:
    ...     writable_file("example", "path", "no-such-folder/model.npz")
    ... except ValueError as error:
    ...     print(str(error).split("; ")[0])
    example: argument 'path': expected a file path in an existing directory
    """
    target = Path(path)
    directory = target.parent
    if not directory.is_dir():
        fail(where, arg, "a file path in an existing directory", repr(str(target)))
    limit = _name_max(directory)
    size = len(os.fsencode(target.name))
    if size > limit:
        fail(where, arg, f"a file name of at most {limit} bytes", f"{size} bytes")
    if target.is_dir():
        fail(where, arg, "a file path, not a directory", repr(str(target)))
    if _inode_flags(directory, os.stat(directory)) & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
        fail(
            where,
            arg,
            "a file path in a directory where files can be replaced",
            f"{str(target)!r} (its directory is immutable or append-only; see lsattr -d)",
        )
    try:
        fd, tmp = _create_temporary(target)
    except OSError as exc:
        fail(
            where,
            arg,
            "a file path in a directory where files can be written",
            f"{str(target)!r} ({exc.strerror or exc})",
        )
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    problem = _replace_problem(target)
    if problem:
        fail(where, arg, "a file that can be replaced", f"{str(target)!r} ({problem})")
    return target


def _name_max(directory: Path) -> int:
    """The longest file name, in bytes, that `directory`'s file system allows."""
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no pathconf (Windows)
        return _NAME_MAX
    return limit if limit > _TEMPORARY_EXTRA else _NAME_MAX


def _temporary_stem(target: Path) -> str:
    """The part of `target`'s name its temporaries carry, cut to fit the name limit.

    Cut in bytes (the limit is in bytes); a multi-byte character cut in two
    decodes to surrogate escapes, which encode back to the same bytes.
    """
    raw = os.fsencode(target.name)
    room = _name_max(target.parent) - _TEMPORARY_EXTRA
    return target.name if len(raw) <= room else os.fsdecode(raw[:room])


def _replace_problem(target: Path) -> str:
    """Why renaming a new file over the existing `target` would fail, or ``""``.

    Checks what the temporary file's creation does not: flags that forbid
    replacing the file itself, and the sticky bit of its directory.
    """
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return exc.strerror or str(exc)
    if _inode_flags(target, info) & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
        return "it is immutable or append-only (see lsattr, chattr)"
    if getattr(info, "st_flags", 0) & _BSD_FLAGS:
        return "it is immutable or append-only (see ls -lO, chflags)"
    return _sticky_problem(target, info)


def _sticky_problem(target: Path, info: os.stat_result) -> str:
    """Why a sticky directory keeps us from replacing `target` (owned by `info.st_uid`), or ``""``.

    In a sticky directory (``/tmp``) only the file's owner, the directory's
    owner and root may rename over a file.
    """
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    if uid is None or uid in (0, info.st_uid):
        return ""
    try:
        folder = os.stat(target.parent)
    except OSError as exc:  # pragma: no cover - the directory was just written to
        return exc.strerror or str(exc)
    if folder.st_mode & stat.S_ISVTX and uid != folder.st_uid:
        return (
            f"owned by user {info.st_uid} in a sticky directory, where only its owner "
            "can replace it"
        )
    return ""


def _inode_flags(target: Path, info: os.stat_result) -> int:
    """The Linux inode flags of `target`, a regular file or a directory (else 0).

    0 elsewhere than on Linux, and where the flags cannot be read. Nothing
    else is opened: opening a device can have effects.
    """
    if not sys.platform.startswith("linux"):
        return 0
    if stat.S_ISREG(info.st_mode):
        mode = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW
    elif stat.S_ISDIR(info.st_mode):
        mode = os.O_RDONLY | os.O_DIRECTORY
    else:
        return 0
    flags = array.array("i", [0])
    try:
        fd = os.open(target, mode)
    except OSError:
        return 0
    try:
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags)
    except OSError:  # a file system without inode flags
        return 0
    finally:
        os.close(fd)
    return flags[0]


def _create_temporary(target: Path) -> tuple[int, Path]:
    """Create and lock a new temporary file for `target`; return its descriptor and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    stem = _temporary_stem(target)
    while True:
        tmp = target.parent / f".{stem}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        if sys.platform == "win32":  # pragma: no cover - no flock
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A cleaner may have locked and removed the file between its
            # creation and our lock: then start again under another name.
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except OSError:
            pass
        os.close(fd)


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the temporaries that killed saves of `target` left behind.

    A temporary whose lock can be taken has no live writer. Best effort:
    every failure is ignored, and nothing is removed where ``flock`` is
    missing (Windows).
    """
    if sys.platform == "win32":  # pragma: no cover - no flock
        return
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    stem = _temporary_stem(target)
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match is None or match["target"] != stem:
            continue
        stale = target.parent / name
        with contextlib.suppress(OSError):
            fd = os.open(stale, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(stale)
            finally:
                os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the system allows it.

    Best effort: the new file is complete and in place already, so a file
    system or platform that cannot sync a directory (Windows, some network
    file systems) is not an error.
    """
    flag = getattr(os, "O_DIRECTORY", None)
    if flag is None:  # pragma: no cover - Windows
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | flag)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
