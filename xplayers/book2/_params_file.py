"""The volume 2 models' ``save_params``/``load_params`` files: ``.npz``, never pickle.

A file is a zip of ``.npy`` arrays, as :func:`numpy.savez` writes: one per
distinct parameter (``p0``, ``p1``, ...; a tied weight is stored once) and
:data:`HEADER_KEY`, a ``uint8`` array of UTF-8 JSON::

    {"format": "xplayers-book2-params", "format_version": 1,
     "class": "BetterRnnlm", "config": {...constructor arguments...},
     "params": [{"name": "p0", "shape": [...], "dtype": "float32"}, ...],
     "metadata": {...}}

It is written atomically and read with the checks of :mod:`xplayers.io`
(:func:`~xplayers.io.save_arrays`, :func:`~xplayers.io.load_arrays`):
the zip directory and every ``.npy`` header are checked before any data
is read, object arrays are refused, and nothing is unpickled; the JSON
header is then checked against the arrays.

The book's file names end in ``.pkl`` (``Rnnlm.pkl``); such a name is
taken to mean the same name ending in ``.npz`` (:func:`npz_path`), so the
book's scripts run unchanged, writing and reading ``.npz`` files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xplayers._files import writable_file
from xplayers.errors import ModelFileError
from xplayers.io import load_arrays, save_arrays

__all__ = ["FORMAT", "HEADER_KEY", "npz_path", "read_params", "write_params"]

FORMAT = "xplayers-book2-params"
FORMAT_VERSION = 1
HEADER_KEY = "__xplayers_book2__"


def npz_path(file_name: str | os.PathLike[str] | None, class_name: str) -> Path:
    """The file the models read and write: ``CLASS.npz`` by default, ``.pkl`` read as ``.npz``."""
    if file_name is None:
        return Path(class_name + ".npz")
    path = Path(file_name)
    return path.with_suffix(".npz") if path.suffix == ".pkl" else path


def write_params(
    path: Path,
    class_name: str,
    config: dict[str, Any],
    arrays: list[npt.NDArray[Any]],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `arrays` and the JSON header to `path` atomically; return `path`."""
    writable_file(f"{class_name}.save_params", "file_name", path)
    names = [f"p{i}" for i in range(len(arrays))]
    entries = [
        {"name": n, "shape": list(a.shape), "dtype": str(a.dtype)}
        for n, a in zip(names, arrays, strict=True)
    ]
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": class_name,
        "config": config,
        "params": entries,
        "metadata": metadata or {},
    }
    header = np.frombuffer(json.dumps(doc, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    return save_arrays(path, {HEADER_KEY: header, **dict(zip(names, arrays, strict=True))})


def read_params(path: Path) -> tuple[dict[str, Any], list[npt.NDArray[Any]]]:
    """The JSON header and the arrays of a file :func:`write_params` wrote, checked.

    Raises
    ------
    xplayers.errors.ModelFileError
        No such file, not an ``.npz`` archive, not written by
        ``save_params``, or headers that disagree with the data.
    """
    members = load_arrays(path)
    doc = _header(path, members)
    arrays = []
    for e in doc["params"]:
        a = members[e["name"]]
        if list(a.shape) != e["shape"] or str(a.dtype) != e["dtype"]:
            raise _error(
                path,
                f"entry {e['name']!r} holds shape {list(a.shape)} {a.dtype}, "
                f"but the header says {e['shape']} {e['dtype']}",
            )
        arrays.append(a)
    return doc, arrays


def _error(path: Path, problem: str) -> ModelFileError:
    return ModelFileError(f"model file {str(path)!r}: {problem}")


def _header(path: Path, members: dict[str, npt.NDArray[Any]]) -> dict[str, Any]:
    raw = members.get(HEADER_KEY)
    if raw is None:
        raise _error(path, "not written by save_params of an xplayers.book2 model (no header)")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _error(path, f"header entry {HEADER_KEY!r} is not UTF-8 JSON bytes")
    try:
        doc = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _error(path, f"header is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _error(path, f"not written by save_params of an xplayers.book2 model ({FORMAT})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise _error(path, f"format version {doc.get('format_version')!r} is not supported")
    raw_params = doc.get("params")
    params: list[Any] = raw_params if isinstance(raw_params, list) else []
    ok = isinstance(raw_params, list) and all(
        isinstance(e, dict)
        and isinstance(e.get("name"), str)
        and e["name"] in members
        and e["name"] != HEADER_KEY
        and isinstance(e.get("shape"), list)
        and e.get("dtype") in ("float16", "float32", "float64")
        for e in params
    )
    if not ok or not isinstance(doc.get("config"), dict):
        raise _error(path, "header has no valid 'params' and 'config'")
    extra = set(members) - {HEADER_KEY} - {e["name"] for e in params}
    if extra:
        raise _error(path, f"holds entries the header does not declare: {sorted(extra)}")
    return doc
