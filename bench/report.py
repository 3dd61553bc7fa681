"""Render the benchmark page from pytest-benchmark JSON files.

    python bench/report.py FOLDER [FOLDER ...] [--output docs/benchmarks.md]

Every ``*.json`` in the folders is read: the summaries ``bench/summary.py``
writes (statistics without the rounds, skipped tests with their reasons), or
pytest-benchmark's own files, which carry the same statistics. What the page
shows comes from each benchmark's ``extra_info`` (keys described in
``bench/README.md``): the goals table with a check mark per goal (``goals``),
one table of samples/s, GB/s or time per ``table``, plots of the rows marked
``plot`` (PNG files under ``_static/bench/`` beside the page), the CPU/GPU
crossover batch when a GPU ran, and where each file was measured (machine,
BLAS kernel, libraries, command). Comparing two runs is pytest-benchmark's own:
``pytest-benchmark compare OLD.json NEW.json``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

OK, FAIL, NA = "\N{CHECK MARK}", "\N{BALLOT X}", "\N{EN DASH}"


def load(folders):
    """``(rows, files, runs)``: one dict per benchmark, per JSON file, per folder's run.json."""
    rows, files, runs = [], [], []
    for folder in map(Path, folders):
        order = {}  # the files in the order the run made them (goals and columns follow it)
        if (folder / "run.json").is_file():
            runs.append(json.loads((folder / "run.json").read_text()))
            order = {p.get("json"): i for i, p in enumerate(runs[-1]["runs"])}
        for path in sorted(folder.glob("*.json"), key=lambda p: (order.get(p.name, 99), p.name)):
            data = json.loads(path.read_text(encoding="utf-8"))
            if "benchmarks" not in data:
                continue
            files.append({"path": path, **data, "skipped": Counter(data.get("skipped", {}))})
            for b in data["benchmarks"]:
                info = b["extra_info"]
                rows.append({"group": b["group"], "impl": info["impl"], "info": info, **b["stats"]})
    return rows, files, runs


def rate(row):
    """Samples per second, else bytes per second, else calls per second."""
    info = row["info"]
    return info.get("samples", info.get("bytes", 1)) / row["median"]


def fmt(x, unit=""):
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}{unit}"
    return f"{x:.3g}{unit}"


def fmt_time(s):
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def cell(row):
    info = row["info"]
    if "samples" in info:
        return fmt(rate(row))
    if "bytes" in info:
        return f"{info['bytes'] / row['median'] / 1e9:.1f}"
    return fmt_time(row["median"])


def md_table(header, body):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def evaluate(rows):
    """``{goal: [(case, impl, vs, value, unit, bound, ok)]}`` from every row's ``goals``."""
    index = {(r["group"], r["impl"]): r for r in rows}
    goals = defaultdict(list)
    for r in rows:
        for g in r["info"].get("goals", []):
            value = g.get("value")
            if value is None and "vs_min" in g:  # the slowest of several baselines, each scaled
                found = [(index.get((r["group"], impl)), scale) for impl, scale in g["vs_min"]]
                if all(b is not None for b, _ in found):
                    value = rate(r) / min(rate(b) * scale for b, scale in found)
            elif value is None:
                base = index.get((g.get("vs_group", r["group"]), g["vs"]))
                if base is not None:
                    time = g.get("measure") == "time"
                    value = r["median"] / base["median"] if time else rate(r) / rate(base)
            lo, hi = g.get("min"), g.get("max")
            bound = " and ".join(
                [f"≥ {lo:g}×" for _ in [lo] if lo is not None]
                + [f"≤ {hi:g}×" for _ in [hi] if hi is not None]
            )
            ok = None
            if value is not None and bound:
                ok = (lo is None or value >= lo) and (hi is None or value <= hi)
            vs = g.get("vs", "")
            if "vs_min" in g:
                parts = [impl if k == 1 else f"{k:g} × {impl}" for impl, k in g["vs_min"]]
                vs = f"min({', '.join(parts)})"
            if g.get("vs_group"):
                vs += f" ({g['vs_group']})"
            case = (r["group"], r["impl"], vs, value, g.get("unit", "×"), bound, ok)
            goals[g["goal"]].append(case)
    return goals


def goal_result(cases):
    """The goals table's cell: ``✗ met in 1 of 16 cases (15 missed)``, ``✓ met in 2 of 2 cases``.

    Cases with a bound but no measured value (their baseline did not run) are
    counted apart; a goal without bounds is a comparison.
    """
    judged = [c[-1] for c in cases if c[-1] is not None]
    missing = sum(c[3] is None for c in cases)
    notes = []
    if judged:
        met = sum(judged)
        result = f"{OK if met == len(judged) else FAIL} met in {met} of {len(judged)} case"
        result += "s" if len(judged) != 1 else ""
        if met < len(judged):
            notes.append(f"{len(judged) - met} missed")
    else:
        result = "compared, no goal" if not missing else f"{NA} not measured"
    if missing:
        notes.append(f"{missing} without a measured baseline")
    return f"{result} ({', '.join(notes)})" if notes else result


def goal_sections(goals):
    summary, details = [], []
    for n, (goal, cases) in enumerate(goals.items(), start=1):
        result = goal_result(cases)
        summary.append([f"[{goal}](#goal-{n})", result])
        body = [
            [group, impl, vs, NA if v is None else f"{v:.2f}{unit}", bound or NA,
             "" if ok is None else OK if ok else FAIL]
            for group, impl, vs, v, unit, bound, ok in cases
        ]  # fmt: skip
        details.append(f"(goal-{n})=\n### {goal}\n\n")
        details.append(md_table(["case", "measured", "against", "ratio", "goal", ""], body))
    return md_table(["goal", "result"], summary), "\n".join(details)


def _key(label):
    return (0, label, "") if isinstance(label, (int, float)) else (1, 0, str(label))


def tables(rows):
    """``{title: (row labels, columns, {(label, impl): row})}`` of the rows with a ``table``."""
    out = {}
    for r in rows:
        info = r["info"]
        if "table" not in info:
            continue
        labels, columns, cells = out.setdefault(info["table"], ([], [], {}))
        label = info.get("row", info.get("batch"))
        if label not in labels:
            labels.append(label)
        if r["impl"] not in columns:
            columns.append(r["impl"])
        cells[label, r["impl"]] = r
    for labels, _, _ in out.values():
        labels.sort(key=_key)
    return out


def render_table(labels, columns, cells):
    ratios = sorted(
        {(impl, r["info"]["relative_to"]) for (_, impl), r in cells.items()
         if r["info"].get("relative_to") in columns}
    )  # fmt: skip
    peaks = [
        c for c in columns if any("peak_mib" in r["info"] for (_, i), r in cells.items() if i == c)
    ]
    header = ["N" if isinstance(labels[0], int) else "", *columns]
    header += [f"{impl} / {base}" for impl, base in ratios]
    header += [f"{impl} peak MiB" for impl in peaks]
    body = []
    for label in labels:
        line = [label] + [cell(cells[label, c]) if (label, c) in cells else NA for c in columns]
        for impl, base in ratios:
            a, b = cells.get((label, impl)), cells.get((label, base))
            line.append(f"{rate(a) / rate(b):.2f}×" if a and b else NA)
        for impl in peaks:
            peak = cells.get((label, impl), {"info": {}})["info"].get("peak_mib")
            line.append(NA if peak is None else f"{peak:.0f}")
        body.append(line)
    return md_table(header, body)


def crossover(labels, cells):
    """Smallest batch from which the fastest plotted GPU row stays ahead of the fastest CPU row."""
    best = {}
    for label in labels:
        for device in ("cpu", "gpu"):
            rates = [rate(r) for (n, _), r in cells.items() if n == label and r["info"].get("plot")
                     and r["info"].get("device") == device]  # fmt: skip
            best[label, device] = max(rates, default=None)
    both = [n for n in labels if best[n, "cpu"] and best[n, "gpu"]]
    ahead = None
    for n in reversed(both):
        if best[n, "gpu"] <= best[n, "cpu"]:
            break
        ahead = n
    return both, ahead


def plot(title, labels, columns, cells, path, ahead):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for impl in columns:
        points = [(n, rate(cells[n, impl])) for n in labels
                  if (n, impl) in cells and cells[n, impl]["info"].get("plot")]  # fmt: skip
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=impl)
    if ahead is not None:
        ax.axvline(ahead, color="grey", linestyle="--", label=f"GPU ahead from N={ahead}")
    ax.set(xscale="log", yscale="log", xlabel="batch size N", ylabel="samples/s", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def provenance(files, runs, folders):
    lines = ["## How this page was made\n"]
    for run in runs:
        lines.append(f"Measured by `{run['command']}`, started {run['started']}, "
                     f"{run['seconds'] / 60:.1f} min in all:\n")  # fmt: skip
        body = [[f"`{p['command']}`", p["exit"], f"{p['seconds']:.0f} s"] for p in run["runs"]]
        lines.append(md_table(["process", "exit", "time"], body))
    lines.append(f"Rendered with `python bench/report.py {' '.join(map(str, folders))}`.\n")
    seen = set()
    body = []
    for f in files:
        mi, x = f["machine_info"], f["machine_info"].get("xplayers", {})
        cpu = mi.get("cpu", {})
        machine = f"{mi.get('node')}: {cpu.get('brand_raw', mi.get('processor'))}, "
        machine += f"{cpu.get('count', '?')} CPUs, {mi.get('system')} {mi.get('release')}"
        machine += "".join(f"; GPU {g}" for g in x.get("gpus", []))
        blas = "; ".join(
            f"{b['internal_api']} {b['version']} {b['architecture']}, {b['num_threads']} threads"
            for b in x.get("blas", [])
        )
        body.append([f["path"].name, f["datetime"][:19], len(f["benchmarks"]), blas or NA])
        seen.add(machine)
    lines.append(md_table(["file", "date (UTC)", "benchmarks", "BLAS kernel that ran"], body))
    lines += [f"Machine: {m}.\n" for m in sorted(seen)]
    if files:
        x = files[0]["machine_info"].get("xplayers", {})
        versions = ", ".join(f"{k} {v}" for k, v in x.get("versions", {}).items())
        env = ", ".join(f"`{k}={v}`" for k, v in x.get("env", {}).items()) or "none"
        commit = files[0].get("commit_info", {})
        lines.append(
            f"Libraries: {versions}. Python {files[0]['machine_info'].get('python_version')}.\n"
        )
        lines.append(f"Environment: {env}. Source: commit {str(commit.get('id'))[:10]}"
                     f"{' (with local changes)' if commit.get('dirty') else ''}.\n")  # fmt: skip
    skipped = sum((f["skipped"] for f in files), Counter())
    if skipped:
        lines.append("Left out (skipped tests, with their reasons):\n")
        lines.append(md_table(["reason", "tests"], sorted(skipped.items())))
    return "\n".join(lines)


def render(folders, output):
    rows, files, runs = load(folders)
    quick = any(f["machine_info"].get("xplayers", {}).get("env", {}).get("XPLAYERS_BENCH_QUICK")
                == "1" for f in files)  # fmt: skip
    out = ["# Benchmarks\n"]
    out.append(
        "```{admonition} Generated page\n:class: note\n\nWritten by `bench/report.py` from the "
        "summaries of pytest-benchmark files listed at the end (`bench/summary.py`: each "
        "benchmark's statistics without its rounds); every number comes from them. "
        "Regenerate it with `nox -s bench` (see `bench/README.md`).\n```\n"
    )
    notes = [Path(f) / "note.md" for f in folders]  # the run's load, processes run beside it
    out.extend(n.read_text(encoding="utf-8").strip() + "\n" for n in notes if n.is_file())
    if quick:
        out.append(
            "```{warning}\nA smoke run (`XPLAYERS_BENCH_QUICK=1`): not a measurement.\n```\n"
        )
    if not rows:
        out.append("No benchmark results were found.\n")
    summary, details = goal_sections(evaluate(rows))
    out += ["## Goals\n", summary, details]
    sections = defaultdict(list)
    static = Path(output).parent / "_static" / "bench"
    crossings = []
    for title, (labels, columns, cells) in tables(rows).items():
        text = [f"### {title}\n"]
        if any(r["info"].get("plot") for r in cells.values()):
            both, ahead = crossover(labels, cells)
            if both:
                crossings.append([title, NA if ahead is None else ahead])
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            plot(title, labels, columns, cells, static / f"{slug}.png", ahead)
            text.append(f"![{title}](_static/bench/{slug}.png)\n")
        text.append(render_table(labels, columns, cells))
        sections[re.split(r"[:,]| on ", title)[0]].append("\n".join(text))
    if crossings:
        out.append(
            "## CPU/GPU crossover\n\nThe smallest batch from which the fastest GPU row stays "
            "ahead of the fastest CPU row (the two may come from different machines).\n"
        )
        out.append(md_table(["table", "GPU ahead from N"], crossings))
    for name, parts in sections.items():
        out.append(f"## {name}\n")
        out += parts
    out.append(provenance(files, runs, folders))
    Path(output).write_text("\n".join(out), encoding="utf-8")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--output", default="docs/benchmarks.md")
    args = p.parse_args(argv)
    render(args.folders, args.output)
    print(f"report: wrote {args.output}")


if __name__ == "__main__":
    main()
