"""Render ``docs/benchmarks.md`` from one benchmark run, or compare two runs.

Usage::

    python bench/report.py RUN [RUN ...] [--output docs/benchmarks.md]
    python bench/report.py NEW --compare OLD [--threshold 1.25] [--stat median]

A ``RUN`` is a folder written by ``bench/run_all.py`` (``run.json``,
``machine.json`` and one pytest-benchmark JSON per target) or a single
pytest-benchmark JSON file. Several runs are merged, e.g. a CPU run and a GPU
run made on another machine with ``bench/run_gpu.sh``; each run's machine is
described separately.

The page holds: the command and machine of every run; what was excluded or
skipped; the goals with a check mark each (xplayers on NumPy against the
book's NumPy code and PyTorch eager on the CPU for the 784-100-10 training
step, the step against the sum of its GEMMs timed alone at N >= 2048, samples/s
at N = 32768 against N = 8192, ReLU forward+backward on large arrays against
the memory-bandwidth bound); samples/s tables for every benchmark group;
log-log plots of throughput against batch size (PNG, next to the page under
``_static/bench/``) with the CPU-GPU crossover marked when a GPU ran.

Regression mode (``--compare OLD``): benchmarks are matched by their full
pytest name; every one whose time (``--stat``, median by default) grew by more
than ``--threshold`` is printed and the exit status is 1. No match at all is
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from book_numpy import LAYERS  # noqa: E402
from limits import step_gemm_shapes  # noqa: E402
from machine import BACKENDS, LIMIT_BACKENDS, PEERS  # noqa: E402

# --------------------------------------------------------------------------- goals

#: xplayers on NumPy over the book's NumPy code, 784-100-10 step, every batch.
GOAL_BOOK = 1.5
#: xplayers on NumPy over PyTorch eager on the CPU: at N <= 128, and above.
GOAL_TORCH_SMALL, GOAL_TORCH_LARGE, GOAL_TORCH_SPLIT = 2.0, 1.25, 128
#: Step time over the sum of its five GEMMs timed alone, at N >= 2048.
GOAL_GEMM, GOAL_GEMM_FROM = 1.15, 2048
#: samples/s at N = 32768 over samples/s at N = 8192 (no fall-off at the largest batch).
GOAL_LARGE, LARGE_FROM, LARGE_TO = 1.0, 8192, 32768
#: ReLU forward+backward time over the bandwidth bound, arrays larger than the caches.
GOAL_RELU = 2.0

GPU_NAMES = frozenset({"cupy", "jax-gpu", "torch-cuda", "torch-eager-cuda"})
#: Limits backend bounding each peer (xplayers rows carry ``extra_info.limits_backend``).
PEER_LIMITS = {
    "book-numpy": "numpy",
    "torch-eager-cpu": "torch-cpu",
    "torch-eager-cuda": "torch-cuda",
}
COVERAGE = ".coverage.json"
BENCH_ONLY_SKIP = "Skipping non-benchmark (--benchmark-only active)."
OK, FAIL = "\N{CHECK MARK}", "\N{BALLOT X}"
NA, TIMES = "\N{EN DASH}", "\N{MULTIPLICATION SIGN}"


# --------------------------------------------------------------------------- loading


@dataclass
class Run:
    """One result folder (or file): its metadata, machine, and the JSON files read."""

    path: Path
    meta: dict[str, Any]
    machine: dict[str, Any]
    files: list[dict[str, Any]] = field(default_factory=list)
    #: ``<target>.coverage.json`` of each process (deselected and skipped tests), if written
    coverage: list[dict[str, Any]] = field(default_factory=list)

    @property
    def smoke(self) -> bool:
        """A quick (smoke) run: tiny configuration, not a measurement."""
        if self.meta.get("plan") == "quick":
            return True
        return any(f.get("selection", {}).get("quick") for f in self.files)

    @property
    def gpus(self) -> list[dict[str, Any]]:
        return list(self.machine.get("gpus") or [])


@dataclass
class Bench:
    """One benchmark row of a pytest-benchmark JSON file."""

    fullname: str
    group: str
    extra: dict[str, Any]
    stats: dict[str, Any]
    run: Run
    source: str

    @property
    def target(self) -> str:
        return str(self.extra.get("target") or "")

    @property
    def kind(self) -> str:
        return str(self.extra.get("kind") or "")

    @property
    def name(self) -> str:
        return str(self.extra.get("name") or self.target.partition(":")[2])

    @property
    def label(self) -> str:
        return label_of(self.target)

    @property
    def gpu(self) -> bool:
        return self.name in GPU_NAMES

    def time(self, stat: str = "median") -> float:
        return float(self.stats[stat])

    def rate(self, stat: str = "median") -> float | None:
        """samples/s from the median (or ``stat``) time."""
        samples = self.extra.get("samples")
        return None if samples is None else samples / self.time(stat)

    def get(self, key: str, default: Any = None) -> Any:
        return self.extra.get(key, default)


def label_of(target: str) -> str:
    """``backend:numpy`` -> ``xplayers-numpy``; ``peer:book-numpy`` -> ``book-numpy``."""
    kind, _, name = target.partition(":")
    return {"backend": f"xplayers-{name}", "peer": name, "limits": f"limits-{name}"}.get(
        kind, target
    )


def _order(label: str) -> tuple[int, int, str]:
    if label.startswith("xplayers-"):
        name = label.removeprefix("xplayers-")
        return (0, BACKENDS.index(name) if name in BACKENDS else 99, name)
    if label in PEERS:
        return (1, PEERS.index(label), label)
    name = label.removeprefix("limits-")
    return (2, LIMIT_BACKENDS.index(name) if name in LIMIT_BACKENDS else 99, name)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def load_run(path: Path) -> tuple[Run, list[Bench]]:
    """Read a result folder or one pytest-benchmark JSON file."""
    if path.is_dir():
        files = sorted(
            p
            for p in path.glob("*.json")
            if p.name not in ("run.json", "machine.json") and not p.name.endswith(COVERAGE)
        )
        coverage = [_read_json(p) for p in sorted(path.glob(f"*{COVERAGE}"))]
        meta = _read_json(path / "run.json")
        machine = _read_json(path / "machine.json")
    elif path.is_file():
        files, meta, machine, coverage = [path], {}, {}, []
    else:
        raise SystemExit(f"report: {path} is neither a result folder nor a JSON file")
    run = Run(path, meta, machine, coverage=coverage)
    benches: list[Bench] = []
    for file in files:
        data = _read_json(file)
        if "benchmarks" not in data:
            continue
        info = (data.get("machine_info") or {}).get("xplayers") or {}
        if not run.machine and info:
            run.machine = info
        targets = sorted({str(b.get("extra_info", {}).get("target")) for b in data["benchmarks"]})
        run.files.append(
            {
                "path": file,
                "datetime": data.get("datetime"),
                "commit": data.get("commit_info") or {},
                "selection": data.get("xplayers_selection") or {},
                "excluded": data.get("xplayers_excluded") or {},
                "skipped": data.get("xplayers_skipped") or {},
                "info": info,
                "targets": targets,
                "count": len(data["benchmarks"]),
            }
        )
        benches.extend(
            Bench(
                fullname=b["fullname"],
                group=b.get("group") or "",
                extra=b.get("extra_info") or {},
                stats=b["stats"],
                run=run,
                source=file.name,
            )
            for b in data["benchmarks"]
        )
    return run, benches


def load(paths: Sequence[Path]) -> tuple[list[Run], list[Bench], list[str]]:
    """Load several runs; a benchmark present in more than one keeps the last one."""
    runs, by_name, notes = [], {}, []
    for path in paths:
        run, benches = load_run(path)
        runs.append(run)
        for b in benches:
            if b.fullname in by_name:
                notes.append(f"{b.fullname}: {path} replaces {by_name[b.fullname].run.path}")
            by_name[b.fullname] = b
    return runs, list(by_name.values()), notes


# --------------------------------------------------------------------------- indexing


class Index:
    """The benchmarks by what the report looks up."""

    def __init__(self, benches: Iterable[Bench]) -> None:
        self.step: dict[tuple[int, str, int, str], Bench] = {}
        self.layer: dict[tuple[str, str, int, str, int, str], Bench] = {}
        self.gemm: dict[tuple[str, int, str, int], list[Bench]] = defaultdict(list)
        self.bandwidth: dict[tuple[str, str], Bench] = {}
        self.relu_large: dict[tuple[str, str], Bench] = {}
        for b in benches:
            e = b.extra
            if b.kind == "step":
                self.step[e["hidden"], e["dtype"], e["batch"], b.label] = b
            elif b.kind == "layer":
                key = (e["layer"], e["phase"], e["hidden"], e["dtype"], e["batch"], b.label)
                self.layer[key] = b
            elif b.kind == "gemm":
                self.gemm[b.name, e["hidden"], e["dtype"], e["batch"]].append(b)
            elif b.kind == "bandwidth":
                self.bandwidth[b.name, e["bandwidth_kind"]] = b
            elif b.kind == "relu_large":
                self.relu_large[b.label, e["dtype"]] = b

    def step_labels(self, hidden: int | None = None, dtype: str | None = None) -> list[str]:
        labels = {
            k[3]
            for k in self.step
            if (hidden is None or k[0] == hidden) and (dtype is None or k[1] == dtype)
        }
        return sorted(labels, key=_order)

    def step_cases(self) -> list[tuple[int, str]]:
        return sorted({(k[0], k[1]) for k in self.step})

    def batches(self, keys: Iterable[tuple[Any, ...]], pos: int) -> list[int]:
        return sorted({k[pos] for k in keys})

    def gemm_sum(self, limits: str, hidden: int, dtype: str, batch: int, stat: str = "median"):
        """Sum of the five GEMM times of a step (None unless all five were measured)."""
        rows = self.gemm.get((limits, hidden, dtype, batch), [])
        names = {r.get("gemm") for r in rows}
        if len(names) < len(step_gemm_shapes(1, 1)):
            return None
        return sum(r.time(stat) for r in rows)

    def copy_gbs(self, limits: str) -> float | None:
        b = self.bandwidth.get((limits, "copy"))
        return None if b is None else b.get("gbs")


def limits_of(b: Bench) -> str | None:
    return b.get("limits_backend") or PEER_LIMITS.get(b.name)


# --------------------------------------------------------------------------- formatting


#: 999.6 shows as 1k, not as 1e+03 (3 significant digits).
ROUNDS_UP = 0.9995


def fmt_rate(x: float | None) -> str:
    """``12345.6`` -> ``12.3k`` (3 significant digits)."""
    if x is None or not math.isfinite(x):
        return NA
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale * ROUNDS_UP:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def fmt_time(s: float | None) -> str:
    if s is None:
        return NA
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale * ROUNDS_UP:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def fmt_ratio(r: float | None) -> str:
    return NA if r is None else f"{r:.2f}{TIMES}"


def mark(ok: bool | None) -> str:
    return "" if ok is None else (OK if ok else FAIL)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; ``|`` inside a cell is escaped."""
    rows = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    if not rows:
        return "_No results._\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"``{text}``"


def _gib(n: Any) -> str:
    return NA if not n else f"{n / 2**30:.1f} GiB"


# --------------------------------------------------------------------------- goal checks


@dataclass
class Check:
    """One goal: its name, rule and a row per case, each with a verdict."""

    title: str
    rule: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    verdicts: list[bool] = field(default_factory=list)
    note: str = ""

    def add(self, row: list[str], ok: bool | None) -> None:
        self.rows.append([*row, mark(ok)])
        if ok is not None:
            self.verdicts.append(ok)

    @property
    def summary(self) -> str:
        if not self.verdicts:
            return "not measured"
        met = sum(self.verdicts)
        verdict = OK if met == len(self.verdicts) else FAIL
        return f"{verdict} {met} of {len(self.verdicts)} cases"


def _ratio(a: Bench | None, b: Bench | None) -> float | None:
    """How many times faster ``a`` is than ``b`` (ratio of median times)."""
    if a is None or b is None:
        return None
    return b.time() / a.time()


def check_peer(idx: Index, peer: str, goal_of) -> Check:
    c = Check(
        f"xplayers-numpy / {peer}, 784-100-10 step",
        "",
        ["dtype", "N", "xplayers-numpy", peer, "ratio", "goal", ""],
    )
    for (hidden, dtype, batch, label), b in sorted(idx.step.items()):
        if hidden != 100 or label != "xplayers-numpy":
            continue
        other = idx.step.get((hidden, dtype, batch, peer))
        r = _ratio(b, other)
        goal = goal_of(batch)
        c.add(
            [
                dtype,
                batch,
                fmt_rate(b.rate()),
                fmt_rate(other and other.rate()),
                fmt_ratio(r),
                f"≥ {goal:g}{TIMES}",
            ],
            None if r is None else r >= goal,
        )
    return c


def check_gemm(idx: Index) -> Check:
    c = Check(
        f"Step time / sum of its GEMMs timed alone, N ≥ {GOAL_GEMM_FROM}",
        "",
        ["implementation", "H", "dtype", "N", "step", "sum of GEMMs", "ratio", ""],
    )
    for (hidden, dtype, batch, label), b in sorted(
        idx.step.items(), key=lambda kv: (_order(kv[0][3]), kv[0][:3])
    ):
        if batch < GOAL_GEMM_FROM:
            continue
        limits = limits_of(b)
        bound = None if limits is None else idx.gemm_sum(limits, hidden, dtype, batch)
        r = None if bound is None else b.time() / bound
        goal = label == "xplayers-numpy"
        c.add(
            [
                label,
                hidden,
                dtype,
                batch,
                fmt_time(b.time()),
                f"{fmt_time(bound)} ({limits})" if bound else NA,
                fmt_ratio(r),
            ],
            None if r is None or not goal else r <= GOAL_GEMM,
        )
    return c


def check_large(idx: Index) -> Check:
    c = Check(
        f"samples/s at N = {LARGE_TO} over N = {LARGE_FROM}",
        "",
        ["implementation", "H", "dtype", f"N={LARGE_FROM}", f"N={LARGE_TO}", "ratio", ""],
    )
    for hidden, dtype in idx.step_cases():
        for label in idx.step_labels(hidden, dtype):
            a = idx.step.get((hidden, dtype, LARGE_FROM, label))
            b = idx.step.get((hidden, dtype, LARGE_TO, label))
            if a is None or b is None:
                continue
            r = b.rate() / a.rate()
            c.add(
                [label, hidden, dtype, fmt_rate(a.rate()), fmt_rate(b.rate()), fmt_ratio(r)],
                r >= GOAL_LARGE if label == "xplayers-numpy" else None,
            )
    return c


def check_relu(idx: Index) -> Check:
    c = Check(
        "ReLU forward+backward on arrays larger than the caches / bandwidth bound",
        "",
        ["implementation", "dtype", "array", "time", "bound", "GB/s", "ratio", ""],
    )
    for (label, dtype), b in sorted(idx.relu_large.items(), key=lambda kv: _order(kv[0][0])):
        limits = limits_of(b)
        gbs = None if limits is None else idx.copy_gbs(limits)
        bound = None if not gbs else b.get("bytes") / (gbs * 1e9)
        r = None if bound is None else b.time() / bound
        c.add(
            [
                label,
                dtype,
                f"{b.get('array_bytes', 0) / 2**20:.0f} MiB",
                fmt_time(b.time()),
                f"{fmt_time(bound)} ({limits} copy {gbs:.1f} GB/s)" if bound else NA,
                f"{b.get('gbs', 0):.1f}",
                fmt_ratio(r),
            ],
            None if r is None or label != "xplayers-numpy" else r <= GOAL_RELU,
        )
    return c


def crossover(idx: Index, hidden: int, dtype: str) -> tuple[int | None, list[list[str]]]:
    """First batch from which the fastest xplayers GPU backend beats the fastest CPU one."""
    rows, batches, wins = [], [], []
    for batch in idx.batches([k for k in idx.step if k[:2] == (hidden, dtype)], 2):
        cpu = [
            b
            for k, b in idx.step.items()
            if k[:3] == (hidden, dtype, batch) and k[3].startswith("xplayers-") and not b.gpu
        ]
        gpu = [
            b
            for k, b in idx.step.items()
            if k[:3] == (hidden, dtype, batch) and k[3].startswith("xplayers-") and b.gpu
        ]
        if not cpu or not gpu:
            continue
        best_cpu = max(cpu, key=lambda b: b.rate())
        best_gpu = max(gpu, key=lambda b: b.rate())
        batches.append(batch)
        wins.append(best_gpu.rate() >= best_cpu.rate())
        rows.append(
            [
                hidden,
                dtype,
                batch,
                f"{fmt_rate(best_cpu.rate())} ({best_cpu.label})",
                f"{fmt_rate(best_gpu.rate())} ({best_gpu.label})",
                "GPU" if wins[-1] else "CPU",
            ]
        )
    at = None
    for i in range(len(batches)):
        if all(wins[i:]):
            at = batches[i]
            break
    return at, rows


# --------------------------------------------------------------------------- plots


def plot_steps(idx: Index, out_dir: Path) -> dict[tuple[int, str], Path]:
    """One log-log PNG of samples/s against batch size per (H, dtype)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("step-*.png"):
        old.unlink()
    labels = idx.step_labels()
    colors = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    paths = {}
    for hidden, dtype in idx.step_cases():
        fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
        for lab in idx.step_labels(hidden, dtype):
            pts = sorted(
                (k[2], b.rate())
                for k, b in idx.step.items()
                if k[:2] == (hidden, dtype) and k[3] == lab
            )
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            gpu = lab.removeprefix("xplayers-") in GPU_NAMES
            ax.plot(
                xs,
                ys,
                label=lab + (" (GPU)" if gpu else ""),
                color=colors[lab],
                linestyle="-" if lab.startswith("xplayers-") else "--",
                marker="o" if not gpu else "^",
                markersize=4,
                linewidth=1.4,
            )
        at, _ = crossover(idx, hidden, dtype)
        if at is not None:
            ax.axvline(at, color="0.3", linestyle=":", linewidth=1.2)
            last = at == max(k[2] for k in idx.step if k[:2] == (hidden, dtype))
            ax.annotate(
                f"GPU faster from N={at}",
                xy=(at, 0.02),
                xycoords=("data", "axes fraction"),
                xytext=(-4 if last else 4, 0),
                textcoords="offset points",
                ha="right" if last else "left",
                fontsize=8,
                color="0.2",
            )
        ax.set_xscale("log", base=2)
        ticks = idx.batches([k for k in idx.step if k[:2] == (hidden, dtype)], 2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("batch size N")
        ax.set_ylabel("training samples / s (median)")
        ax.set_title(f"Training step, 784-{hidden}-10 net, {dtype}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncols=2)
        fig.tight_layout()
        path = out_dir / f"step-H{hidden}-{dtype}.png"
        fig.savefig(path)
        plt.close(fig)
        paths[hidden, dtype] = path
    return paths


# --------------------------------------------------------------------------- rendering


def _cores(cpu: dict[str, Any]) -> str:
    return ", ".join(
        f"{what} {cpu.get(key, '?')}"
        for what, key in (
            ("logical", "logical_cpus"),
            ("physical", "physical_cores"),
            ("usable", "usable_cpus"),
        )
    )


def _gpu(g: dict[str, Any]) -> str:
    return (
        f"{g.get('name')} ({_gib(g.get('memory_bytes'))}, compute capability "
        f"{g.get('capability')}, CUDA runtime {g.get('cuda_runtime')})"
    )


def _torch(torch: dict[str, Any]) -> str:
    if not torch:
        return NA
    return f"{torch.get('num_threads')} threads, {torch.get('blas')}, {torch.get('cpu_capability')}"


def _rate_of(b: Bench | None) -> str:
    return NA if b is None else fmt_rate(b.rate())


def _run_section(run: Run, n: int, total: int) -> list[str]:
    out = []
    m, meta = run.machine, run.meta
    title = f"Run {n}: {run.path.name}" if total > 1 else f"Run: {run.path.name}"
    out.append(f"### {title}\n")
    if meta.get("invoked_as"):
        out.append("Produced by:\n")
        out.append(f"```sh\n{meta['invoked_as']}\n```\n")
        if meta.get("command") and meta["command"] != meta["invoked_as"]:
            out.append(f"which ran {code(meta['command'])}.")
        out.append(
            f"Plan {code(meta.get('plan', '?'))}, started {meta.get('started', '?')}, "
            f"all targets took {meta.get('seconds', 0) / 60:.1f} min. Each target ran as\n"
        )
        out.append(
            f"```sh\nXPLAYERS_BENCH_TARGETS=<target> {' '.join(meta.get('pytest', []))} "
            "--benchmark-json=<target>.json\n```\n"
        )
        if meta.get("unset_env"):
            unset = ", ".join(f"{code(k + '=' + v)}" for k, v in meta["unset_env"].items())
            out.append(f"with these variables of the calling environment unset: {unset}.\n")
        knobs = {k: v for k, v in meta.get("knobs", {}).items() if v}
        if knobs:
            out.append(
                "Selection variables: "
                + ", ".join(code(f"{k}={v}") for k, v in knobs.items())
                + ".\n"
            )
    else:
        out.append(
            "No `run.json` here: these files were not written by `bench/run_all.py`, so "
            "the command is not recorded.\n"
        )
    out.append(
        table(
            ["item", "value"],
            [
                ["host", m.get("hostname", "?")],
                [
                    "CPU",
                    f"{m.get('cpu', {}).get('model', '?')} ({m.get('cpu', {}).get('machine', '')})",
                ],
                ["cores", _cores(m.get("cpu", {}))],
                ["SIMD", ", ".join(m.get("cpu", {}).get("simd", [])) or NA],
                [
                    "caches",
                    ", ".join(
                        f"{k} {v // 1024} KiB"
                        for k, v in (m.get("cpu", {}).get("caches") or {}).items()
                    )
                    or NA,
                ],
                ["memory", _gib(m.get("memory_bytes"))],
                ["platform", f"{m.get('platform', '?')}, Python {m.get('python', '?')}"],
                [
                    "GPU",
                    "; ".join(_gpu(g) for g in run.gpus) or "none",
                ],
                [
                    "load average at start",
                    ", ".join(f"{x:.2f}" for x in m.get("loadavg") or []) or NA,
                ],
            ],
        )
    )
    commits = {
        (f["commit"].get("id", "")[:10], bool(f["commit"].get("dirty")))
        for f in run.files
        if f["commit"].get("id")
    }
    if commits:
        out.append(
            "Source: "
            + ", ".join(
                f"commit {c}" + (" with uncommitted changes" if d else "")
                for c, d in sorted(commits)
            )
            + ".\n"
        )
    versions = m.get("versions") or {}
    if versions:
        out.append("Libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".\n")
    rows = []
    results = {r["target"]: r for r in meta.get("results", [])}
    for f in run.files:
        info = f["info"]
        torch = info.get("torch") or {}
        targets = ", ".join(label_of(t) for t in f["targets"] if t != "None") or NA
        r = next((results[t] for t in f["targets"] if t in results), {})
        rows.append(
            [
                f["path"].name,
                targets,
                f["count"],
                r.get("exit", NA),
                f"{r['seconds']:.0f} s" if "seconds" in r else NA,
                info.get("blas_summary", NA),
                _torch(torch),
            ]
        )
    for t, r in results.items():
        if not r.get("json"):
            rows.append(
                [
                    NA,
                    label_of(t),
                    0,
                    r.get("exit"),
                    f"{r.get('seconds', 0):.0f} s",
                    r.get("summary", ""),
                    "",
                ]
            )
    out.append(
        "Per target (the BLAS kernel is threadpoolctl's `architecture`, as loaded in that "
        "process):\n"
    )
    out.append(table(["file", "rows", "benchmarks", "exit", "time", "BLAS", "torch"], rows))
    check = meta.get("check")
    if check:
        out.append(
            f"Correctness check first ({code('pytest bench/ -k matches_book')}: every "
            f"implementation trains like the book from the same weights): exit "
            f"{check['exit']}, {check.get('summary', '')}.\n"
        )
    return out


def _coverage(runs: Sequence[Run]) -> list[str]:
    excluded: dict[str, int] = defaultdict(int)
    skipped: dict[str, int] = defaultdict(int)
    rules = set()
    for run in runs:
        if run.meta.get("exclude"):
            rules.update(r.strip() for r in run.meta["exclude"].split(";") if r.strip())
        # the coverage files also cover processes whose tests all skipped (no JSON then)
        for f in run.coverage or run.files:
            for rule, n in f.get("excluded", {}).items():
                excluded[rule] += n
            for reason, n in f.get("skipped", {}).items():
                if reason != BENCH_ONLY_SKIP:
                    skipped[reason] += n
    out = ["## What was left out\n"]
    if not rules and not excluded and not skipped:
        out.append("Nothing: every selected combination ran.\n")
        return out
    if rules or excluded:
        out.append(
            "Combinations deselected by the plan's exclusion rules "
            "(`--bench-exclude`, see `bench/conftest.py`), with how many benchmarks "
            "each removed over all targets:\n"
        )
        out.append(
            table(
                ["rule", "benchmarks removed"],
                [[code(r), excluded.get(r, 0)] for r in sorted(rules | set(excluded))],
            )
        )
    if skipped:
        out.append("Skipped while running:\n")
        out.append(table(["reason", "tests"], [[r, n] for r, n in sorted(skipped.items())]))
    return out


def _step_tables(idx: Index, images: dict[tuple[int, str], Path], md_dir: Path) -> list[str]:
    out = [
        "## Training step\n",
        "One `train_step` (forward, loss, backward, SGD update) of a 784-H-10 net from the "
        "same weights and batch for every implementation; samples/s from the median time. "
        "Group `step H=<H> N=<N> <dtype>`.\n",
    ]
    for hidden, dtype in idx.step_cases():
        out.append(f"### 784-{hidden}-10, {dtype}\n")
        if (hidden, dtype) in images:
            rel = os.path.relpath(images[hidden, dtype], md_dir)
            out.append(f"![samples/s against batch size, 784-{hidden}-10, {dtype}]({rel})\n")
        labels = idx.step_labels(hidden, dtype)
        batches = idx.batches([k for k in idx.step if k[:2] == (hidden, dtype)], 2)
        rows = [
            [batch, *(_rate_of(idx.step.get((hidden, dtype, batch, lab))) for lab in labels)]
            for batch in batches
        ]
        out.append(table(["N", *labels], rows))
    return out


def _layer_tables(idx: Index) -> list[str]:
    out = [
        "## Layers\n",
        "Each layer alone on the arrays of `book_numpy.layer_arrays`, samples/s (median). "
        "`affine1` is 784→H, `affine2` H→10; both compute `dx`, as the book's do. The last "
        "column is xplayers on NumPy over the book.\n",
    ]
    cases = sorted(
        {(k[0], k[2], k[3]) for k in idx.layer},
        key=lambda c: (LAYERS.index(c[0]) if c[0] in LAYERS else 99, *c[1:]),
    )
    for layer, hidden, dtype in cases:
        h = "" if layer == "softmaxwithloss" else f", H={hidden}"
        out.append(f"### {layer}{h}, {dtype}\n")
        for phase in ("forward", "backward", "both"):
            keys = [
                k for k in idx.layer if (k[0], k[1], k[2], k[3]) == (layer, phase, hidden, dtype)
            ]
            if not keys:
                continue
            labels = sorted({k[5] for k in keys}, key=_order)
            rows = []
            for batch in idx.batches(keys, 4):
                cells = [idx.layer.get((layer, phase, hidden, dtype, batch, lab)) for lab in labels]
                x = idx.layer.get((layer, phase, hidden, dtype, batch, "xplayers-numpy"))
                book = idx.layer.get((layer, phase, hidden, dtype, batch, "book-numpy"))
                rows.append(
                    [
                        batch,
                        *(fmt_rate(c.rate()) if c else NA for c in cells),
                        fmt_ratio(_ratio(x, book)),
                    ]
                )
            out.append(f"**{phase}**\n")
            out.append(table(["N", *labels, "xplayers-numpy / book"], rows))
    return out


def _limits_tables(idx: Index) -> list[str]:
    out = [
        "## Machine limits\n",
        "The five GEMMs of a step (`x@W1`, `h@W2`, `h.T@dout`, `dout@W2.T`, `x.T@dh`), each "
        "timed alone into a preallocated output with the step's operand layouts; the table "
        "gives their summed median time and the GFLOP/s it implies. Group "
        "`gemm H=<H> N=<N> <dtype>`.\n",
    ]
    backends = sorted({k[0] for k in idx.gemm}, key=lambda n: _order("limits-" + n))
    cases = sorted({(k[1], k[2]) for k in idx.gemm})
    for hidden, dtype in cases:
        rows = []
        for batch in sorted({k[3] for k in idx.gemm if k[1:3] == (hidden, dtype)}):
            flops = sum(g.flops for g in step_gemm_shapes(batch, hidden))
            cells = []
            for name in backends:
                s = idx.gemm_sum(name, hidden, dtype, batch)
                cells.append(NA if s is None else f"{fmt_time(s)} ({flops / s / 1e9:.1f} GFLOP/s)")
            rows.append([batch, *cells])
        out.append(f"**784-{hidden}-10, {dtype}**\n")
        out.append(table(["N", *backends], rows))
    if idx.bandwidth:
        out.append("Streaming bandwidth (GB/s, STREAM byte counting; NumPy on one thread):\n")
        names = sorted({k[0] for k in idx.bandwidth}, key=lambda n: _order("limits-" + n))
        kernels = [
            k
            for k in ("copy", "scale", "add", "triad")
            if any((n, k) in idx.bandwidth for n in names)
        ]
        rows = []
        for kern in kernels:
            cells = []
            for n in names:
                b = idx.bandwidth.get((n, kern))
                cells.append(NA if b is None else f"{b.get('gbs', 0):.1f}")
            rows.append([kern, *cells])
        sizes = {b.get("array_bytes") for b in idx.bandwidth.values()}
        out.append(table(["kernel", *names], rows))
        out.append(
            "Array size: " + ", ".join(f"{s / 2**20:.0f} MiB" for s in sorted(sizes)) + ".\n"
        )
    return out


def render(
    runs: Sequence[Run], benches: Sequence[Bench], output: Path, notes: Sequence[str]
) -> str:
    idx = Index(benches)
    md_dir = output.parent
    images = plot_steps(idx, md_dir / "_static" / "bench") if idx.step else {}
    smoke = any(r.smoke for r in runs)
    out = ["# Benchmarks\n"]
    out.append(
        "```{admonition} Generated page\n:class: note\n\n"
        "Written by `python bench/report.py` from the result files listed under "
        '"How this page was made"; regenerate it with `nox -s bench` (see '
        "`bench/README.md`). Every number below comes from those files.\n```\n"
    )
    if smoke:
        out.append(
            "```{warning}\nThis is a **smoke run** (`quick` plan: batches 1 and 32, "
            "H = 100, a few rounds per benchmark, on a machine that may have been busy). "
            "It only shows that the suites and this page work; its numbers are not "
            "measurements and no conclusion should be drawn from them.\n```\n"
        )

    torch_goal = lambda n: GOAL_TORCH_SMALL if n <= GOAL_TORCH_SPLIT else GOAL_TORCH_LARGE  # noqa: E731
    checks = [
        (
            check_peer(idx, "book-numpy", lambda n: GOAL_BOOK),
            f"xplayers on NumPy ≥ {GOAL_BOOK:g}{TIMES} the samples/s of the book's NumPy code, "
            "784-100-10 step, every batch and dtype",
        ),
        (
            check_peer(idx, "torch-eager-cpu", torch_goal),
            f"xplayers on NumPy ≥ {GOAL_TORCH_SMALL:g}{TIMES} PyTorch eager (CPU) at N ≤ "
            f"{GOAL_TORCH_SPLIT}, ≥ {GOAL_TORCH_LARGE:g}{TIMES} above, 784-100-10 step",
        ),
        (
            check_gemm(idx),
            f"xplayers on NumPy: step time ≤ {GOAL_GEMM:g}{TIMES} the sum of its five GEMMs "
            f"timed alone (`limits:numpy`) at N ≥ {GOAL_GEMM_FROM}; other implementations "
            "for comparison",
        ),
        (
            check_large(idx),
            f"xplayers on NumPy: samples/s at N = {LARGE_TO} ≥ {GOAL_LARGE:g}{TIMES} those at "
            f"N = {LARGE_FROM} (no fall-off at the largest batch)",
        ),
        (
            check_relu(idx),
            f"xplayers on NumPy: ReLU forward+backward on arrays larger than the caches within "
            f"{GOAL_RELU:g}{TIMES} of the bandwidth bound (bytes moved / `copy` bandwidth)",
        ),
    ]
    out.append("## Goals\n")
    out.append(table(["goal", "result"], [[rule, c.summary] for c, rule in checks]))
    for c, rule in checks:
        out.append(f"### {c.title}\n")
        out.append(f"Goal: {rule}.\n")
        out.append(table(c.header, c.rows))
    gpu_rows, marks = [], []
    for hidden, dtype in idx.step_cases():
        at, rows = crossover(idx, hidden, dtype)
        gpu_rows += rows
        if rows:
            marks.append(f"784-{hidden}-10 {dtype}: " + (f"N = {at}" if at else "none measured"))
    if gpu_rows:
        out.append("### CPU-GPU crossover\n")
        out.append(
            "The fastest xplayers GPU backend against the fastest xplayers CPU backend "
            "at each batch size; the crossover is the smallest batch from which the GPU "
            "stays ahead (" + "; ".join(marks) + "). CPU and GPU rows may come from "
            "different machines: see the runs below.\n"
        )
        out.append(table(["H", "dtype", "N", "best CPU", "best GPU", "faster"], gpu_rows))

    out += _step_tables(idx, images, md_dir)
    out += _layer_tables(idx)
    out += _limits_tables(idx)
    out += _coverage(runs)
    out.append("## How this page was made\n")
    out.append("Render again from the same files with:\n")
    out.append(
        "```sh\npython bench/report.py "
        + " ".join(os.path.relpath(r.path, ROOT) for r in runs)
        + " --output "
        + os.path.relpath(output, ROOT)
        + "\n```\n"
    )
    for i, run in enumerate(runs, 1):
        out += _run_section(run, i, len(runs))
    if notes:
        out.append(
            f"{len(notes)} benchmarks were present in more than one run; the later run's "
            "result is used.\n"
        )
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- regression mode


def compare(new: Sequence[Bench], old: Sequence[Bench], threshold: float, stat: str) -> int:
    """Print benchmarks slower than ``threshold`` x the old run; 1 if any, 2 if none matched."""
    old_by = {b.fullname: b for b in old}
    matched = [(b, old_by[b.fullname]) for b in new if b.fullname in old_by]
    if not matched:
        print("report --compare: no benchmark of the new run is in the old one", file=sys.stderr)
        return 2
    slower = sorted(
        (
            (n.time(stat) / o.time(stat), n, o)
            for n, o in matched
            if n.time(stat) > threshold * o.time(stat)
        ),
        key=lambda t: -t[0],
    )
    faster = sum(1 for n, o in matched if o.time(stat) > threshold * n.time(stat))
    print(
        f"compared {len(matched)} benchmarks by {stat} time, threshold {threshold:g}x "
        f"({len(new) - len(matched)} only in the new run, "
        f"{len(old_by) - len(matched)} only in the old one); "
        f"{len(slower)} slower, {faster} faster past the threshold"
    )
    if slower:
        print(f"{'slower':>8}  {'old':>10}  {'new':>10}  benchmark")
        for r, n, o in slower:
            print(
                f"{r:7.2f}x  {fmt_time(o.time(stat)):>10}  {fmt_time(n.time(stat)):>10}  "
                f"{n.fullname}  [{n.group}]"
            )
        return 1
    return 0


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="result folders or JSON files")
    p.add_argument(
        "--output",
        type=Path,
        help="markdown to write (default docs/benchmarks.md; with --compare, none unless given)",
    )
    p.add_argument(
        "--compare",
        type=Path,
        action="append",
        metavar="OLD",
        help="old result folder or JSON file: exit 1 if a benchmark got slower",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=1.25,
        help="--compare: slower means new time > THRESHOLD x old time (default 1.25)",
    )
    p.add_argument(
        "--stat",
        default="median",
        choices=["median", "min", "mean"],
        help="--compare: which time to compare (default median)",
    )
    args = p.parse_args(argv)
    runs, benches, notes = load(args.runs)
    status = 0
    if args.compare:
        _, old, _ = load(args.compare)
        status = compare(benches, old, args.threshold, args.stat)
        if args.output is None:
            return status
    output = args.output or ROOT / "docs" / "benchmarks.md"
    if not benches:
        print(f"report: no benchmark results in {[str(r) for r in args.runs]}", file=sys.stderr)
        return 2
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(runs, benches, output.resolve(), notes))
    print(f"report: wrote {output} ({len(benches)} benchmarks from {len(runs)} run(s))")
    return status


if __name__ == "__main__":
    sys.exit(main())
