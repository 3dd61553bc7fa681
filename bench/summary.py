"""Summarise pytest-benchmark JSON files: what the report reads, without the rounds.

    python bench/summary.py FOLDER [FOLDER ...]

For every ``FOLDER/raw/<stem>.json`` (pytest-benchmark's ``--benchmark-json``,
with every round's time in ``stats.data``) this writes ``FOLDER/<stem>.json``:
the same layout with each benchmark's statistics (median, ``q1``/``q3``/``iqr``,
``min``/``max``, mean, rounds, ...) and no ``data`` arrays, the machine info
without the CPU's flag list, and, from ``FOLDER/raw/<stem>.log`` when there is
one, pytest's closing line (``outcome``) and the reasons of skipped tests
(``skipped``). One benchmark per line, so a whole run is a few thousand lines
that diff line by line; ``raw/`` stays out of git. ``pytest-benchmark compare``
and ``bench/report.py`` read the summaries as they read the full files.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

FORMAT = "xplayers-bench-summary 1"
RAW = "raw"  # the folder, beside the summaries, of pytest-benchmark's own files and the logs
_SKIPPED = re.compile(r"^SKIPPED \[(\d+)\] [^:]+:\d+: (.*)$", re.M)
_OUTCOME = re.compile(  # in -q and in full mode (between = signs)
    r"^=*\s*(\d+ (?:passed|failed|skipped|errors?|deselected|xfailed|xpassed)\b.*?)\s*=*$", re.M
)


def skipped(log: str) -> dict[str, int]:
    """``{reason: tests}`` from pytest's ``-rs`` lines (``SKIPPED [n] file:line: reason``)."""
    counts: dict[str, int] = {}
    for m in _SKIPPED.finditer(log):
        counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1))
    return counts


def outcome(log: str) -> str | None:
    """pytest's closing line, e.g. ``456 passed, 96 skipped in 129.66s (0:02:09)``."""
    found = _OUTCOME.findall(log)
    return found[-1] if found else None


def summarize(raw: dict[str, Any], log: str | None = None) -> dict[str, Any]:
    """The summary of one pytest-benchmark JSON document (and the log of its process)."""
    machine = dict(raw["machine_info"])
    if isinstance(machine.get("cpu"), dict):
        machine["cpu"] = {k: v for k, v in machine["cpu"].items() if k != "flags"}
    benchmarks = [
        {**{k: v for k, v in b.items() if k != "stats"},
         "stats": {k: v for k, v in b["stats"].items() if k != "data"}}
        for b in raw["benchmarks"]
    ]  # fmt: skip
    summary = {"format": FORMAT, **{k: v for k, v in raw.items() if k != "benchmarks"}}
    summary["machine_info"] = machine
    if log is not None:
        summary["outcome"] = outcome(log)
        summary["skipped"] = skipped(log)
    summary["benchmarks"] = benchmarks
    return summary


def dumps(summary: dict[str, Any]) -> str:
    """JSON text with one line per top-level key and one per benchmark."""
    lines = ["{"]
    for key, value in summary.items():
        if key == "benchmarks":
            continue
        lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    rows = [" " + json.dumps(b, ensure_ascii=False) for b in summary["benchmarks"]]
    lines.append(' "benchmarks": [')
    lines.append(",\n".join(rows))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(line for line in lines if line) + "\n"


def summarize_folder(folder: Path) -> list[Path]:
    """Summarise every ``folder/raw/*.json`` into ``folder``; the summaries written.

    A raw file's log is the ``.log`` of the same name beside it; JSON files that
    are not pytest-benchmark's (no ``benchmarks``) are left alone.
    """
    written = []
    for raw in sorted((folder / RAW).glob("*.json")):
        data = json.loads(raw.read_text(encoding="utf-8"))
        if "benchmarks" not in data:
            continue
        log = raw.with_suffix(".log")
        text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else None
        out = folder / raw.name
        out.write_text(dumps(summarize(data, text)), encoding="utf-8")
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    args = p.parse_args(argv)
    for folder in args.folders:
        written = summarize_folder(folder)
        lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in written)
        print(f"summary: {len(written)} files, {lines} lines in {folder}")


if __name__ == "__main__":
    main()
