"""The backend matrix: a ``backend`` fixture parametrized over every backend, and ``xp``.

``backend`` is the :class:`TestBackend` record of one backend of the matrix (its
id, the xplayers :class:`~xplayers.backend.Backend`, host-to-backend ``asarray``,
``to_numpy``, ...); ``xp`` is that backend's array namespace module, as in
array-api-extra's tests. Both also select the backend as the current one for
the test.

Choose the backends with ``--backends=numpy,torch`` or the environment variable
``XPLAYERS_TEST_BACKENDS``; with ``--require-backends`` (or
``XPLAYERS_TEST_REQUIRE=1``) a chosen backend that is not usable fails the run
instead of skipping, so a session named after a backend cannot pass by
skipping everything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from tests.matrix import COLUMNS, TestId, check_stack, prepare
from xplayers.backend import RECORDS, Record, backend_status, resolve

# Every column of the matrix, from tests/matrix.py: id -> (record, column).
BACKEND_IDS: dict[str, tuple[Record, TestId]] = {
    t.id: (RECORDS[name], t) for name, columns in COLUMNS.items() for t in columns
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=os.environ.get("XPLAYERS_TEST_BACKENDS", ""),
        help="comma-separated backend ids to test (default: all); ids: " + ", ".join(BACKEND_IDS),
    )
    parser.addoption(
        "--require-backends",
        action="store_true",
        default=os.environ.get("XPLAYERS_TEST_REQUIRE", "") not in ("", "0"),
        help="fail, instead of skipping, when a selected backend is not usable",
    )


def _selected(config: pytest.Config) -> list[str]:
    raw = config.getoption("--backends")
    if not raw:
        return list(BACKEND_IDS)
    ids = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [i for i in ids if i not in BACKEND_IDS]
    if unknown:
        raise pytest.UsageError(f"unknown backend ids {unknown}; valid: {list(BACKEND_IDS)}")
    return ids


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a GPU backend")
    config.addinivalue_line(
        "markers",
        "backends(*names): a test without the backend fixture that belongs to the sessions"
        " of these backends (default: numpy's)",
    )
    if config.getoption("--require-backends"):
        missing = []
        for bid in _selected(config):
            rec, col = BACKEND_IDS[bid]
            ok, why = backend_status(rec.name, col.device)
            if not ok:
                missing.append(f"{bid}: {why}")
            elif (problem := check_stack(rec.name)) is not None:
                missing.append(f"{bid}: {problem}")
        if missing:
            raise pytest.UsageError("required backends are not usable:\n  " + "\n  ".join(missing))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run each test without the ``backend`` fixture once, not once per backend session.

    Such a test (the CLI, files, datasets, ...) does not depend on the backend
    under test, so it runs where NumPy is selected (the default, the numpy
    session), or where one of the names of its ``backends`` marker is. A test
    *with* the fixture and a ``backends`` marker runs on those backends only
    (deselected elsewhere, rather than skipped once per other backend).
    """
    names = {BACKEND_IDS[bid][0].name for bid in _selected(config)}
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("backends")
        wanted = set(marker.args) if marker else {"numpy"}
        if "backend" in getattr(item, "fixturenames", ()):
            bid = getattr(getattr(item, "callspec", None), "params", {}).get("backend_id")
            own = BACKEND_IDS[bid][0].name if bid in BACKEND_IDS else None
            (keep if marker is None or own in wanted else drop).append(item)
            continue
        (keep if wanted & names else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@dataclass
class TestBackend:
    """What a test needs to know about one backend of the matrix."""

    id: str
    backend: xpl.backend.Backend
    readonly: bool = False

    __test__ = False  # not a test class

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def xp(self) -> Any:
        return self.backend.xp

    @property
    def device(self) -> Any:
        return self.backend.device

    @property
    def lazy(self) -> bool:
        return self.backend.record.lazy

    @property
    def slow(self) -> bool:
        """Lazy (Dask) or compiling each new shape (JAX): tests run a subset of their cases here."""
        rec = self.backend.record
        return rec.lazy or rec.compiles

    @property
    def examples(self) -> int:
        """How many examples a hypothesis property draws on this backend."""
        return 5 if self.slow else 25

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Put NumPy data on this backend (read-only for the read-only NumPy variant)."""
        host = np.array(a, dtype=dtype)
        if self.readonly:
            host.setflags(write=False)
            return host
        return self.backend.asarray(host)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(xpl.to_numpy(x))

    def dtype(self, name: str) -> Any:
        return getattr(self.xp, name)


_prepared: set[str] = set()


def _make(bid: str) -> TestBackend:
    rec, col = BACKEND_IDS[bid]
    ok, why = backend_status(rec.name, col.device)
    if not ok:
        pytest.skip(f"backend {bid} not usable: {why}")
    if rec.name not in _prepared:
        prepare(rec.name)  # e.g. JAX: enable float64 for the oracle comparisons
        _prepared.add(rec.name)
    return TestBackend(bid, resolve(rec.name, col.device), readonly=col.readonly)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        ids = _selected(metafunc.config)
        marks = {bid: [pytest.mark.gpu] if BACKEND_IDS[bid][1].gpu else [] for bid in ids}
        metafunc.parametrize(
            "backend_id", [pytest.param(b, id=b, marks=marks[b]) for b in ids], scope="session"
        )


@pytest.fixture(scope="session")
def _backend_cache() -> dict[str, TestBackend]:
    return {}


@pytest.fixture
def backend(backend_id: str, _backend_cache: dict[str, TestBackend]) -> Iterator[TestBackend]:
    """One backend of the matrix, also selected as the current backend during the test."""
    if backend_id not in _backend_cache:
        _backend_cache[backend_id] = _make(backend_id)
    b = _backend_cache[backend_id]
    with xpl.use_backend(b.backend.name, b.backend.device):
        yield b


@pytest.fixture
def xp(backend: TestBackend) -> Any:
    """The array namespace of the ``backend`` under test (``numpy``, ``torch``, ...)."""
    return backend.xp


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


class _Messages(logging.Handler):
    """Keeps the messages of the records it gets."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def distributed_warnings() -> Iterator[list[str]]:
    """The warnings dask.distributed logs during the test (its scheduler's and client's)."""
    handler = _Messages()
    log = logging.getLogger("distributed")
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
