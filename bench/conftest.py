"""Shared options, parametrization and reporting for the benchmark suites in ``bench/``.

The project's plain ``pytest`` run does not collect this directory
(``testpaths = ["tests"]``); run it as ``pytest bench/ --benchmark-...``.

What runs is chosen with command-line options or environment variables (the
option wins); lists are comma-separated, ``all`` means everything available
here and ``none`` means nothing:

=====================  ============================  ======================================
option                 environment variable          default
=====================  ============================  ======================================
``--bench-batches``    ``XPLAYERS_BENCH_BATCHES``    1,8,32,128,512,2048,8192,32768
``--bench-hidden``     ``XPLAYERS_BENCH_HIDDEN``     100,1000
``--bench-dtypes``     ``XPLAYERS_BENCH_DTYPES``     float32,float64
``--bench-peers``      ``XPLAYERS_BENCH_PEERS``      book-numpy, torch-eager-cpu, torch-eager-cuda
``--bench-backends``   ``XPLAYERS_BENCH_BACKENDS``   xplayers backends installed and usable
``--bench-limits``     ``XPLAYERS_BENCH_LIMITS``     numpy, torch-cpu, torch-cuda, cupy
``--bench-layers``     ``XPLAYERS_BENCH_LAYERS``     relu,sigmoid,affine1,affine2,softmaxwithloss
``--bench-phases``     ``XPLAYERS_BENCH_PHASES``     forward,backward,both
``--bench-bandwidth``  ``XPLAYERS_BENCH_BANDWIDTH``  copy,scale,add,triad
``--bench-bw-mib``     ``XPLAYERS_BENCH_BW_MIB``     4x the CPU caches, at least 64 MiB
``--bench-pause``      ``XPLAYERS_BENCH_PAUSE``      1.0 (seconds between targets)
``--bench-quick``      ``XPLAYERS_BENCH_QUICK=1``    batches 1,32, hidden 100, bw 64 MiB
``--bench-targets``    ``XPLAYERS_BENCH_TARGETS``    unset (see below)
=====================  ============================  ======================================

``--bench-targets`` names whole targets, ``<kind>:<name>`` with kind ``limits``,
``peer`` or ``backend`` (e.g. ``peer:book-numpy,limits:numpy``), and replaces
``--bench-peers``, ``--bench-backends`` and ``--bench-limits``: only the named
targets run. ``python bench/machine.py --targets`` lists those usable here.

Fixtures a suite may request, each parametrized from the selection: ``batch``
(int), ``hidden`` (int), ``dtype`` (``"float32"``/``"float64"``), ``peer``
(peers with a training step), ``layer_peer`` (peers with per-layer code:
``book-numpy``), ``backend`` (xplayers backends), ``limits_backend``,
``layer_case`` (:class:`LayerCase`), ``phase``, ``bandwidth_kind``; plus
``bench_report`` (records throughput in ``benchmark.extra_info``) and
``bench_selection`` (the :class:`Selection`).

Isolation: tests are reordered so that each *target* (one peer, one xplayers
backend, or one limits backend) runs as one contiguous block, and the run
sleeps ``--bench-pause`` seconds whenever the target changes, so BLAS/OpenMP
worker threads left spinning by one library (OpenBLAS keeps spinning ~100 ms
after a call) have gone idle before another library's clock starts. For the
cleanest numbers run one process per target (see ``bench/README.md``).
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import pytest

try:
    import pytest_benchmark  # noqa: F401
except ImportError:  # pragma: no cover - the suites need pytest-benchmark
    HAVE_BENCHMARK = False
    collect_ignore_glob = ["test_*.py"]
else:
    HAVE_BENCHMARK = True

from book_numpy import HIDDEN_INDEPENDENT_LAYERS, LAYERS
from limits import BANDWIDTH_PASSES, BATCH_SIZES, DTYPES, HIDDEN_SIZES
from machine import (
    BACKENDS,
    LIMIT_BACKENDS,
    PEERS,
    TARGET_KINDS,
    available_backends,
    blas_summary,
    describe,
    limits_unusable,
    peer_unusable,
)

#: Peers that have per-layer implementations (``layer_peer``).
LAYER_PEERS = ("book-numpy",)
PHASES = ("forward", "backward", "both")
QUICK_BATCHES = (1, 32)
QUICK_HIDDEN = (100,)
QUICK_BW_MIB = 64


class LayerCase(NamedTuple):
    """One layer benchmarked alone: its name and the hidden width H of its shapes."""

    layer: str
    hidden: int

    @property
    def id(self) -> str:
        """Test-id fragment, e.g. ``relu-H1000``."""
        if self.layer in HIDDEN_INDEPENDENT_LAYERS:
            return self.layer
        return f"{self.layer}-H{self.hidden}"


@dataclass
class Selection:
    """What this benchmark run covers (from options / environment)."""

    batches: list[int]
    hidden: list[int]
    dtypes: list[str]
    peers: list[str]
    backends: list[str]
    limits: list[str]
    layers: list[str]
    phases: list[str]
    bandwidth: list[str]
    bw_mib: int | None
    pause: float
    quick: bool
    unavailable: dict[str, str] = field(default_factory=dict)

    def layer_cases(self) -> list[LayerCase]:
        """Layer cases: every layer at every hidden width, H-independent ones once."""
        cases = []
        for layer in self.layers:
            widths = self.hidden[:1] if layer in HIDDEN_INDEPENDENT_LAYERS else self.hidden
            cases.extend(LayerCase(layer, h) for h in widths)
        return cases


OPTIONS = {
    "batches": "XPLAYERS_BENCH_BATCHES",
    "hidden": "XPLAYERS_BENCH_HIDDEN",
    "dtypes": "XPLAYERS_BENCH_DTYPES",
    "peers": "XPLAYERS_BENCH_PEERS",
    "backends": "XPLAYERS_BENCH_BACKENDS",
    "limits": "XPLAYERS_BENCH_LIMITS",
    "layers": "XPLAYERS_BENCH_LAYERS",
    "phases": "XPLAYERS_BENCH_PHASES",
    "bandwidth": "XPLAYERS_BENCH_BANDWIDTH",
    "bw-mib": "XPLAYERS_BENCH_BW_MIB",
    "pause": "XPLAYERS_BENCH_PAUSE",
    "targets": "XPLAYERS_BENCH_TARGETS",
}


OPTION_HELP = {
    "bw-mib": "MiB per array of the bandwidth kernels",
    "pause": "seconds to sleep whenever the target changes",
    "targets": "comma-separated <kind>:<name> targets, replacing peers/backends/limits",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xplayers-bench", "xplayers benchmark selection")
    for name, env in OPTIONS.items():
        group.addoption(
            f"--bench-{name}",
            action="store",
            default=None,
            metavar="NUMBER" if name in ("bw-mib", "pause") else "LIST",
            help=OPTION_HELP.get(name, f"comma-separated {name} (or all/none)") + f"; env {env}",
        )
    group.addoption(
        "--bench-quick",
        action="store_true",
        default=None,
        help="smoke run: batches 1,32, hidden 100, 64 MiB bandwidth arrays; "
        "env XPLAYERS_BENCH_QUICK=1",
    )


def _raw(config: pytest.Config, name: str) -> str | None:
    override = getattr(config, "_xplayers_bench_targets", None)
    if override and name in override:
        return override[name]
    value = config.getoption(f"--bench-{name}")
    if value is None:
        value = os.environ.get(OPTIONS[name])
    return value if value is None else value.strip()


def _choose(
    config: pytest.Config,
    name: str,
    known: Sequence[str],
    default: Sequence[str],
    usable: Callable[[str], str | None] = lambda _: None,
    unavailable: dict[str, str] | None = None,
) -> list[str]:
    """Parse a name list; ``all``/unset gives ``default`` minus what ``usable`` rejects.

    Names asked for explicitly are kept even when unusable (their tests skip
    with the reason), so a run never silently drops a requested target.
    """
    raw = _raw(config, name)
    if raw is None or raw.lower() == "all":
        chosen = [n for n in default if usable(n) is None]
        return chosen
    if raw.lower() in ("", "none"):
        return []
    chosen = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [n for n in chosen if n not in known]
    if bad:
        msg = f"--bench-{name}: unknown {bad}; known: {', '.join(known)}"
        raise pytest.UsageError(msg)
    if unavailable is not None:
        for n in chosen:
            reason = usable(n)
            if reason:
                unavailable[n] = reason
    return chosen


def _ints(config: pytest.Config, name: str, default: Sequence[int]) -> list[int]:
    raw = _raw(config, name)
    if raw is None or raw.lower() == "all":
        return list(default)
    try:
        return [int(s) for s in raw.split(",") if s.strip()]
    except ValueError:
        msg = f"--bench-{name}: expected comma-separated integers, got {raw!r}"
        raise pytest.UsageError(msg) from None


def _number(config: pytest.Config, name: str, kind: type) -> Any:
    raw = _raw(config, name)
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        msg = f"--bench-{name}: expected a number, got {raw!r}"
        raise pytest.UsageError(msg) from None


def _targets(config: pytest.Config) -> dict[str, str] | None:
    """``--bench-targets``: ``{"peers": "book-numpy", "backends": "none", ...}`` or None."""
    raw = _raw(config, "targets")
    if raw is None:
        return None
    chosen: dict[str, list[str]] = {kind: [] for kind in TARGET_KINDS}
    for target in filter(None, (s.strip() for s in raw.split(","))):
        kind, sep, name = target.partition(":")
        if not sep or kind not in chosen:
            msg = f"--bench-targets: {target!r} is not <kind>:<name> with kind in {TARGET_KINDS}"
            raise pytest.UsageError(msg)
        chosen[kind].append(name)
    option = {"limits": "limits", "peer": "peers", "backend": "backends"}
    return {option[kind]: ",".join(names) or "none" for kind, names in chosen.items()}


@functools.cache
def _usable_backends() -> frozenset[str]:
    # Only asked when backends are selected, so a process benchmarking one peer
    # does not import the other array libraries.
    return frozenset(available_backends())


def selection(config: pytest.Config) -> Selection:
    """The run's :class:`Selection`, parsed once per session."""
    cached = getattr(config, "_xplayers_bench_selection", None)
    if cached is not None:
        return cached
    quick = bool(config.getoption("--bench-quick")) or os.environ.get(
        "XPLAYERS_BENCH_QUICK", ""
    ).lower() in ("1", "true", "yes")
    config._xplayers_bench_targets = _targets(config)  # type: ignore[attr-defined]
    unavailable: dict[str, str] = {}
    bw = _number(config, "bw-mib", int)
    pause = _number(config, "pause", float)
    sel = Selection(
        batches=_ints(config, "batches", QUICK_BATCHES if quick else BATCH_SIZES),
        hidden=_ints(config, "hidden", QUICK_HIDDEN if quick else HIDDEN_SIZES),
        dtypes=_choose(config, "dtypes", DTYPES, DTYPES),
        peers=_choose(config, "peers", PEERS, PEERS, peer_unusable, unavailable),
        backends=_choose(
            config,
            "backends",
            BACKENDS,
            BACKENDS,
            lambda b: None if b in _usable_backends() else "not installed or no device",
            unavailable,
        ),
        limits=_choose(
            config, "limits", LIMIT_BACKENDS, LIMIT_BACKENDS, limits_unusable, unavailable
        ),
        layers=_choose(config, "layers", LAYERS, LAYERS),
        phases=_choose(config, "phases", PHASES, PHASES),
        bandwidth=_choose(config, "bandwidth", tuple(BANDWIDTH_PASSES), tuple(BANDWIDTH_PASSES)),
        bw_mib=bw if bw else (QUICK_BW_MIB if quick else None),
        pause=1.0 if pause is None else pause,
        quick=quick,
        unavailable=unavailable,
    )
    config._xplayers_bench_selection = sel  # type: ignore[attr-defined]
    return sel


# --------------------------------------------------------------------------- parametrization


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    sel = selection(metafunc.config)
    names = metafunc.fixturenames
    # Order matters for test ids and grouping: target first, batch last.
    table: list[tuple[str, list[Any], list[str]]] = [
        ("peer", sel.peers, sel.peers),
        (
            "layer_peer",
            [p for p in sel.peers if p in LAYER_PEERS],
            [p for p in sel.peers if p in LAYER_PEERS],
        ),
        ("backend", sel.backends, sel.backends),
        ("limits_backend", sel.limits, sel.limits),
        ("bandwidth_kind", sel.bandwidth, sel.bandwidth),
        ("layer_case", sel.layer_cases(), [c.id for c in sel.layer_cases()]),
        ("hidden", sel.hidden, [f"H{h}" for h in sel.hidden]),
        ("phase", sel.phases, sel.phases),
        ("dtype", sel.dtypes, sel.dtypes),
        ("batch", sel.batches, [f"N{b}" for b in sel.batches]),
    ]
    used = [(name, values, ids) for name, values, ids in table if name in names]
    for name, values, _ in used:
        if not values:
            # Nothing selected for this fixture: one placeholder item, deselected later.
            mark = pytest.mark.xplayers_unselected
            metafunc.parametrize(name, [pytest.param(None, id=f"no-{name}", marks=mark)])
            return
    for name, values, ids in used:
        marks = {
            v: pytest.mark.skip(reason=f"{v}: {sel.unavailable[v]}")
            for v in values
            if isinstance(v, str) and v in sel.unavailable
        }
        params = [
            pytest.param(v, id=i, marks=marks[v]) if v in marks else pytest.param(v, id=i)
            for v, i in zip(values, ids, strict=True)
        ]
        metafunc.parametrize(name, params)


TARGET_KEYS = (
    ("peer", "peer"),
    ("layer_peer", "peer"),
    ("backend", "backend"),
    ("limits_backend", "limits"),
)


def target_of(item: pytest.Item) -> str | None:
    """The target a test measures, e.g. ``peer:book-numpy`` or ``backend:numpy``."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    for key, kind in TARGET_KEYS:
        if key in params:
            return f"{kind}:{params[key]}"
    return None


def _target_rank(target: str | None) -> tuple[int, int]:
    if target is None:
        return (0, 0)
    kind, _, name = target.partition(":")
    order = {"limits": (1, LIMIT_BACKENDS), "peer": (2, PEERS), "backend": (3, BACKENDS)}
    rank, names = order[kind]
    return (rank, names.index(name) if name in names else len(names))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "xplayers_unselected: placeholder of a test none of whose cases is selected"
    )
    selection(config)  # report a bad option or environment variable as a usage error


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Any:
    # A target with no suite yet (or all deselected) makes pytest-benchmark warn that it
    # saves no JSON; not an error, although the project turns warnings into errors.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Not saving anything")
        return (yield)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unselected = [item for item in items if item.get_closest_marker("xplayers_unselected")]
    if unselected:
        config.hook.pytest_deselected(items=unselected)
        items[:] = [item for item in items if not item.get_closest_marker("xplayers_unselected")]
    # Stable sort: each target becomes one contiguous block (limits, peers, backends).
    items.sort(key=lambda item: _target_rank(target_of(item)))


_last_target: list[str | None] = [None]


def pytest_runtest_setup(item: pytest.Item) -> None:
    target = target_of(item)
    if target != _last_target[0]:
        if _last_target[0] is not None:
            time.sleep(selection(item.config).pause)
        _last_target[0] = target


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def bench_selection(request: pytest.FixtureRequest) -> Selection:
    """The run's :class:`Selection`."""
    return selection(request.config)


@pytest.fixture
def bench_report(request: pytest.FixtureRequest, benchmark: Any) -> Callable[..., None]:
    """Record what a benchmark measured in ``benchmark.extra_info``; call after ``benchmark()``.

    ``bench_report(samples=N, flops=F, nbytes=B, **info)`` stores the work
    amounts and, from the timing stats, ``samples_per_s``, ``gflops``,
    ``gbs`` (each from the median; ``*_best`` from the minimum), plus the
    test's target and parameters and any ``info`` given (peer name, layer,
    phase, GEMM shape, ...).
    """

    def report(
        *,
        samples: int | None = None,
        flops: float | None = None,
        nbytes: float | None = None,
        **info: Any,
    ) -> None:
        extra = benchmark.extra_info
        params = getattr(getattr(request.node, "callspec", None), "params", {})
        for key, value in params.items():
            extra[key] = list(value) if isinstance(value, tuple) else value
        if isinstance(params.get("layer_case"), LayerCase):
            extra["layer"], extra["hidden"] = params["layer_case"]
            del extra["layer_case"]
        extra["target"] = target_of(request.node)
        extra.update(info)
        work = {"samples": samples, "flops": flops, "bytes": nbytes}
        extra.update({k: v for k, v in work.items() if v is not None})
        stats = getattr(getattr(benchmark, "stats", None), "stats", None)
        if not stats or not getattr(stats, "data", None):
            return
        for key, amount, scale in (
            ("samples_per_s", samples, 1.0),
            ("gflops", flops, 1e-9),
            ("gbs", nbytes, 1e-9),
        ):
            if amount is not None:
                extra[key] = amount * scale / stats.median
                extra[f"{key}_best"] = amount * scale / stats.min

    return report


# --------------------------------------------------------------------------- run description


def pytest_report_header(config: pytest.Config) -> list[str]:
    import numpy  # noqa: F401 - so threadpoolctl sees NumPy's BLAS

    sel = selection(config)
    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    lines = [
        f"xplayers bench: batches={sel.batches} hidden={sel.hidden} dtypes={sel.dtypes}",
        f"  peers={sel.peers} backends={sel.backends} limits={sel.limits} pause={sel.pause}s",
        f"  BLAS: {blas_summary()}; OPENBLAS env: {env or 'unset'}",
    ]
    if sel.unavailable:
        lines.append(f"  requested but unavailable (skipped): {sel.unavailable}")
    return lines


if HAVE_BENCHMARK:  # pytest rejects hooks of plugins that are not installed

    def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
        """Store :func:`machine.describe` (CPU, BLAS kernel and threads, OPENBLAS_* env, GPUs)."""
        machine_info["xplayers"] = describe()

    def pytest_benchmark_update_json(
        config: pytest.Config, benchmarks: Any, output_json: dict
    ) -> None:
        """Store the run's selection (batches, dtypes, peers, backends, pause...)."""
        output_json["xplayers_selection"] = asdict(selection(config))
