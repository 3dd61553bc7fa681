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
``--bench-exclude``    ``XPLAYERS_BENCH_EXCLUDE``    unset (see below)
=====================  ============================  ======================================

``XPLAYERS_BENCH_DEADLINE`` (a Unix time, set by ``bench/run_all.py --budget``)
makes tests that would start after it skip, so a process still ends normally
and writes the JSON of what it measured.

``--bench-targets`` names whole targets, ``<kind>:<name>`` with kind ``limits``,
``peer`` or ``backend`` (e.g. ``peer:book-numpy,limits:numpy``), and replaces
``--bench-peers``, ``--bench-backends`` and ``--bench-limits``: only the named
targets run. ``python bench/machine.py --targets`` lists those usable here.

``--bench-exclude`` deselects slow combinations with rules separated by ``;``;
a rule is ``,``-separated conditions ``key=value`` (``a|b`` for either),
``key!=value``, ``key<value``, ``key<=value``, ``key>value``, ``key>=value``,
and a test matching every condition of one rule is deselected, e.g.
``name=dask|array-api-strict,batch>2048; kind=layer,hidden=1000,batch>8192``.
Keys: ``batch``, ``hidden``, ``dtype``, ``phase``, ``layer``, ``gemm``,
``bandwidth_kind``, ``name`` (peer, backend or limits backend), ``target``
(``backend:dask``), ``kind`` (the test function without ``test_``: ``step``,
``layer``, ``gemm``, ``bandwidth``, ``relu_large``, ...) and ``module``
(``peers``, ``xplayers``, ``limits``). A condition on a key the test does not
have never matches. How many tests each rule deselected, and the reasons of
skipped tests, are stored in the JSON (``xplayers_excluded``,
``xplayers_skipped``) for the report.

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
import re
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
from limits import BANDWIDTH_PASSES, BATCH_SIZES, DTYPES, HIDDEN_SIZES, step_gemm_shapes
from machine import (
    BACKENDS,
    LIMIT_BACKENDS,
    PEERS,
    TARGET_KINDS,
    _installed,
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
    exclude: list[str] = field(default_factory=list)

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
    "exclude": "XPLAYERS_BENCH_EXCLUDE",
}


OPTION_HELP = {
    "bw-mib": "MiB per array of the bandwidth kernels",
    "pause": "seconds to sleep whenever the target changes",
    "targets": "comma-separated <kind>:<name> targets, replacing peers/backends/limits",
    "exclude": "';'-separated rules deselecting tests, e.g. 'name=dask,batch>2048'",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xplayers-bench", "xplayers benchmark selection")
    for name, env in OPTIONS.items():
        group.addoption(
            f"--bench-{name}",
            action="store",
            default=None,
            metavar={"bw-mib": "NUMBER", "pause": "NUMBER", "exclude": "RULES"}.get(name, "LIST"),
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


#: Module each CPU backend needs; probing it imports nothing.
CPU_BACKEND_MODULES = {
    "numpy": "numpy",
    "array-api-strict": "array_api_strict",
    "dask": "dask",
    "jax-cpu": "jax",
    "torch-cpu": "torch",
}


def backend_unusable(name: str) -> str | None:
    """Why xplayers backend ``name`` cannot run here, or ``None``.

    A CPU backend is only looked up (not imported), so a process benchmarking
    ``backend:numpy`` does not import torch or cupy to find out about GPUs.
    """
    module = CPU_BACKEND_MODULES.get(name)
    if module is not None:
        return None if _installed(module) else f"{module} is not installed"
    return None if name in _usable_backends() else "not installed or no device"


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
            backend_unusable,
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
        exclude=[rule.text for rule in exclude_rules(_raw(config, "exclude"))],
    )
    config._xplayers_bench_selection = sel  # type: ignore[attr-defined]
    return sel


# --------------------------------------------------------------------------- exclusion rules

#: Keys an exclusion rule may test.
EXCLUDE_KEYS = (
    "batch",
    "hidden",
    "dtype",
    "phase",
    "layer",
    "gemm",
    "bandwidth_kind",
    "name",
    "target",
    "kind",
    "module",
)
_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|!=|=|<|>)\s*(\S.*?)\s*$")


def _number_or_text(value: Any) -> float | str:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True)
class ExcludeRule:
    """One ``--bench-exclude`` rule: a test matching all its conditions is deselected."""

    text: str
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]

    def matches(self, facts: dict[str, Any]) -> bool:
        """Whether a test with these ``facts`` (see :func:`item_facts`) matches every condition."""
        for key, op, values in self.conditions:
            if facts.get(key) is None:
                return False
            have = _number_or_text(facts[key])
            wanted = [_number_or_text(v) for v in values]
            if op in ("=", "!="):
                hit = any(have == w for w in wanted)
                if hit != (op == "="):
                    return False
                continue
            (limit,) = wanted
            if isinstance(have, str) or isinstance(limit, str):
                return False
            ok = {"<": have < limit, "<=": have <= limit, ">": have > limit, ">=": have >= limit}
            if not ok[op]:
                return False
        return True


def exclude_rules(raw: str | None) -> list[ExcludeRule]:
    """Parse ``--bench-exclude`` text (``rule; rule``, a rule being ``cond,cond``)."""
    rules: list[ExcludeRule] = []
    for text in (r.strip() for r in (raw or "").split(";")):
        if not text or text.lower() == "none":
            continue
        conditions = []
        for cond in text.split(","):
            m = _CONDITION.match(cond)
            if not m or m.group(1) not in EXCLUDE_KEYS:
                msg = (
                    f"--bench-exclude: bad condition {cond.strip()!r} in rule {text!r}; "
                    f"expected <key><op><value> with key in {EXCLUDE_KEYS} and op one of "
                    "= != < <= > >="
                )
                raise pytest.UsageError(msg)
            key, op, value = m.groups()
            values = tuple(v.strip() for v in value.split("|"))
            if op not in ("=", "!=") and (
                len(values) != 1 or isinstance(_number_or_text(values[0]), str)
            ):
                msg = f"--bench-exclude: {cond.strip()!r}: {op} needs one number"
                raise pytest.UsageError(msg)
            conditions.append((key, op, values))
        rules.append(ExcludeRule(" ".join(text.split()), tuple(conditions)))
    return rules


def item_facts(item: pytest.Item) -> dict[str, Any]:
    """What an exclusion rule can test about a collected benchmark."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    facts: dict[str, Any] = {
        k: params.get(k) for k in ("batch", "hidden", "dtype", "phase", "bandwidth_kind")
    }
    case = params.get("layer_case")
    if isinstance(case, LayerCase):
        facts["layer"], facts["hidden"] = case.layer, case.hidden
    if isinstance(params.get("gemm"), int):
        facts["gemm"] = step_gemm_shapes(1, 1)[params["gemm"]].name.split()[0]  # fc1, dW2, ...
    target = target_of(item)
    facts["target"] = target
    facts["name"] = target.partition(":")[2] if target else None
    name = getattr(item, "originalname", None) or item.name
    facts["kind"] = name.removeprefix("test_")
    module = getattr(getattr(item, "module", None), "__name__", "") or ""
    facts["module"] = module.rpartition(".")[2].removeprefix("test_") or None
    return facts


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
        result = yield
    # XPLAYERS_BENCH_COVERAGE (set by bench/run_all.py): what was deselected and skipped,
    # written even when every test skipped and pytest-benchmark saves no JSON.
    path = os.environ.get("XPLAYERS_BENCH_COVERAGE")
    if path:
        import json

        data = {"excluded": _EXCLUDED, "skipped": _SKIPPED, "exit": int(session.exitstatus)}
        with open(path, "w") as fh:
            json.dump(data, fh, indent=1)
    return result


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unselected = [item for item in items if item.get_closest_marker("xplayers_unselected")]
    if unselected:
        config.hook.pytest_deselected(items=unselected)
        items[:] = [item for item in items if not item.get_closest_marker("xplayers_unselected")]
    rules = exclude_rules(_raw(config, "exclude"))
    if rules:
        counts = {rule.text: 0 for rule in rules}
        kept, excluded = [], []
        for item in items:
            facts = item_facts(item)
            rule = next((r for r in rules if r.matches(facts)), None)
            if rule is None:
                kept.append(item)
            else:
                counts[rule.text] += 1
                excluded.append(item)
        _EXCLUDED.update(counts)
        if excluded:
            config.hook.pytest_deselected(items=excluded)
            items[:] = kept
    # Stable sort: each target becomes one contiguous block (limits, peers, backends).
    items.sort(key=lambda item: _target_rank(target_of(item)))


_last_target: list[str | None] = [None]
#: Tests deselected per ``--bench-exclude`` rule, and skipped tests per reason (for the JSON).
_EXCLUDED: dict[str, int] = {}
_SKIPPED: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        _SKIPPED[reason] = _SKIPPED.get(reason, 0) + 1


def _deadline() -> float | None:
    raw = os.environ.get("XPLAYERS_BENCH_DEADLINE", "").strip()
    return float(raw) if raw else None


def pytest_runtest_setup(item: pytest.Item) -> None:
    # XPLAYERS_BENCH_DEADLINE (Unix time, set by bench/run_all.py --budget): tests that
    # would start later skip, so the process still ends normally and writes its JSON.
    deadline = _deadline()
    if deadline is not None and time.time() > deadline:
        pytest.skip("the run's time budget was spent (XPLAYERS_BENCH_DEADLINE)")
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
        """Store the run's selection, what ``--bench-exclude`` deselected and what skipped."""
        output_json["xplayers_selection"] = asdict(selection(config))
        output_json["xplayers_excluded"] = dict(_EXCLUDED)
        output_json["xplayers_skipped"] = dict(_SKIPPED)
