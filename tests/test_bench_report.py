"""The benchmark summaries (``bench/summary.py``) and the page rendered from them (``bench/report.py``).

Nothing here times anything: the pytest-benchmark documents are made up, and
the committed run's summaries are only rendered.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    """``bench/<name>.py``, which is a script folder, not a package."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


summary = _load("summary")
report = _load("report")

LOG = """\
..ss..                                                                   [100%]
Wrote benchmark data in: bench/results/cpu/raw/x.json

=========================== short test summary info ============================
SKIPPED [3] bench/test_x.py:10: SoftmaxWithLoss does not depend on H
SKIPPED [1] bench/test_x.py:20: no GPU here
SKIPPED [2] bench/test_x.py:10: SoftmaxWithLoss does not depend on H
4 passed, 6 skipped in 12.50s
"""


def _bench(impl: str, median: float, group: str = "step N=8", **info: Any) -> dict[str, Any]:
    data = [median * f for f in (0.9, 1.0, 1.0, 1.1, 1.3)]
    stats = {
        "min": min(data), "max": max(data), "mean": sum(data) / 5, "stddev": 0.1,
        "rounds": 5, "median": median, "iqr": 0.1 * median, "q1": 0.95 * median,
        "q3": 1.05 * median, "iqr_outliers": 0, "stddev_outliers": 1, "outliers": "1;0",
        "ld15iqr": min(data), "hd15iqr": max(data), "ops": 5 / sum(data), "total": sum(data),
        "data": data, "iterations": 1,
    }  # fmt: skip
    return {
        "group": group,
        "name": f"test_step[{impl}]",
        "fullname": f"bench/test_x.py::test_step[{impl}]",
        "params": {"impl": impl},
        "param": impl,
        "extra_info": {"impl": impl, **info},
        "options": {"min_rounds": 5, "max_time": 0.1},
        "stats": stats,
    }


def _raw(*benchmarks: dict[str, Any]) -> dict[str, Any]:
    """A pytest-benchmark document as ``--benchmark-json`` writes it."""
    return {
        "machine_info": {
            "node": "vm",
            "system": "Linux",
            "release": "6.1",
            "python_version": "3.12.3",
            "cpu": {"brand_raw": "AMD EPYC", "count": 2, "flags": ["avx", "avx2", "fma"] * 40},
            "xplayers": {"versions": {"numpy": "2.4.6"}, "env": {"XPLAYERS_BACKEND": "numpy"}},
        },
        "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "benchmarks": list(benchmarks),
        "datetime": "2026-12-01T14:18:16.000000+00:00",
        "version": "5.3.1",
    }


GOALS = [{"goal": "fast at least 1.5x the book", "vs": "book", "min": 1.5}]
TABLE = {"table": "Training step (samples/s)", "row": 8, "samples": 8}


def _run_doc() -> dict[str, Any]:
    """Two cases of one goal, one met (ratio 2) and one missed (ratio 1.25)."""
    return _raw(
        _bench("book", 2e-3, **TABLE),
        _bench("fast", 1e-3, goals=GOALS, **TABLE),
        _bench("book", 4e-3, group="step N=32", **{**TABLE, "row": 32, "samples": 32}),
        _bench(
            "fast", 3.2e-3, group="step N=32", goals=GOALS, **{**TABLE, "row": 32, "samples": 32}
        ),
    )


def test_summary_keeps_the_statistics_and_drops_the_rounds() -> None:
    raw = _run_doc()
    s = summary.summarize(raw)
    assert s["format"] == summary.FORMAT
    assert len(s["benchmarks"]) == 4
    for full, short in zip(raw["benchmarks"], s["benchmarks"], strict=True):
        assert "data" not in short["stats"]
        for key in ("median", "q1", "q3", "iqr", "min", "max", "mean", "rounds", "iterations"):
            assert short["stats"][key] == full["stats"][key]
        assert {k: v for k, v in short.items() if k != "stats"} == {
            k: v for k, v in full.items() if k != "stats"
        }
    assert "flags" not in s["machine_info"]["cpu"]
    assert s["machine_info"]["cpu"]["brand_raw"] == "AMD EPYC"
    assert s["machine_info"]["xplayers"] == raw["machine_info"]["xplayers"]
    assert s["commit_info"] == raw["commit_info"]
    assert s["datetime"] == raw["datetime"]
    assert "data" in raw["benchmarks"][0]["stats"], "the summary changed its input"


def test_summary_takes_the_skipped_tests_and_outcome_from_the_log() -> None:
    s = summary.summarize(_run_doc(), LOG)
    assert s["skipped"] == {"SoftmaxWithLoss does not depend on H": 5, "no GPU here": 1}
    assert s["outcome"] == "4 passed, 6 skipped in 12.50s"
    full_mode = "....\n========== 8 passed in 100.30s (0:01:40) ==========\n"
    assert summary.outcome(full_mode) == "8 passed in 100.30s (0:01:40)"
    assert summary.outcome("collecting ...\n") is None
    assert "skipped" not in summary.summarize(_run_doc())  # no log: nothing claimed


def test_summary_text_is_one_line_per_benchmark_and_reads_back() -> None:
    s = summary.summarize(_run_doc(), LOG)
    text = summary.dumps(s)
    assert json.loads(text) == s
    header = len(s) - 1  # one line per key but "benchmarks"
    assert len(text.splitlines()) == header + 4 + len(s["benchmarks"])
    assert all(json.loads(line.rstrip(","))["group"] for line in text.splitlines()[header + 2 : -2])
    empty = summary.summarize(_raw())
    assert json.loads(summary.dumps(empty)) == empty


def test_summarize_folder_writes_beside_raw(tmp_path: Path) -> None:
    raw = tmp_path / summary.RAW
    raw.mkdir()
    (raw / "step-numpy.json").write_text(json.dumps(_run_doc(), indent=4), encoding="utf-8")
    (raw / "step-numpy.log").write_text(LOG, encoding="utf-8")
    (raw / "other.json").write_text('{"not": "a benchmark file"}', encoding="utf-8")
    written = summary.summarize_folder(tmp_path)
    assert written == [tmp_path / "step-numpy.json"]
    s = json.loads(written[0].read_text(encoding="utf-8"))
    assert s["skipped"]["no GPU here"] == 1
    assert len(written[0].read_text(encoding="utf-8")) < len(json.dumps(_run_doc(), indent=4))
    assert not (tmp_path / "other.json").exists()


def _render(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(report, "plot", lambda *args: None)  # the page's text only
    page = folder / "page" / "benchmarks.md"
    page.parent.mkdir(exist_ok=True)
    report.render([folder], page)
    return page.read_text(encoding="utf-8")


def test_report_renders_summaries_as_it_renders_the_full_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = _run_doc()
    (tmp_path / "step-numpy.json").write_text(json.dumps(doc), encoding="utf-8")
    from_raw = _render(tmp_path, monkeypatch)
    (tmp_path / "step-numpy.json").write_text(
        summary.dumps(summary.summarize(doc)), encoding="utf-8"
    )
    assert _render(tmp_path, monkeypatch) == from_raw
    assert "| 8 | 4k | 8k |" in from_raw  # samples / median
    assert "| 32 | 8k | 10k |" in from_raw


def test_report_lists_the_skipped_tests_of_the_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "step-numpy.json").write_text(
        summary.dumps(summary.summarize(_run_doc(), LOG)), encoding="utf-8"
    )
    (tmp_path / "step-numpy.log").write_text("SKIPPED [7] x.py:1: from a stray log\n")
    page = _render(tmp_path, monkeypatch)
    assert "| SoftmaxWithLoss does not depend on H | 5 |" in page
    assert "| no GPU here | 1 |" in page
    assert "stray" not in page


def test_goals_table_says_how_many_cases_met_and_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "step-numpy.json").write_text(json.dumps(_run_doc()), encoding="utf-8")
    page = _render(tmp_path, monkeypatch)
    assert "| [fast at least 1.5x the book](#goal-1) | ✗ met in 1 of 2 cases (1 missed) |" in page


@pytest.mark.parametrize(
    ("oks", "values", "expected"),
    [
        ([True, True], [2.0, 2.0], "✓ met in 2 of 2 cases"),
        ([True], [2.0], "✓ met in 1 of 1 case"),
        ([False, True, False], [1.0, 2.0, 1.0], "✗ met in 1 of 3 cases (2 missed)"),
        (
            [False, None],
            [1.0, None],
            "✗ met in 0 of 1 case (1 missed, 1 without a measured baseline)",
        ),
        ([None, None], [None, None], f"{report.NA} not measured (2 without a measured baseline)"),
        ([None], [1.3], "compared, no goal"),
    ],
)
def test_goal_result_wording(
    oks: list[bool | None], values: list[float | None], expected: str
) -> None:
    cases = [
        ("g", "fast", "book", v, "x", ">= 1.5x", ok) for ok, v in zip(oks, values, strict=True)
    ]
    assert report.goal_result(cases) == expected


def test_committed_page_is_rendered_from_the_committed_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/benchmarks.md is what ``python bench/report.py bench/results/cpu`` writes."""
    results = ROOT / "bench" / "results" / "cpu"
    files = sorted(results.glob("*.json"))
    assert files, f"no results in {results}"
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        if "benchmarks" in data:
            assert data.get("format") == summary.FORMAT, f"{path.name} is not a summary"
            assert not any("data" in b["stats"] for b in data["benchmarks"]), path.name
    kept = [p for p in (ROOT / "bench" / "results").glob("*/*.*") if p.parent.name != "tmp"]
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in kept)
    assert lines < 5000, f"the results in git hold {lines} lines"
    monkeypatch.chdir(ROOT)  # the page names the folder as given on the command line
    monkeypatch.setattr(report, "plot", lambda *args: None)
    page = tmp_path / "benchmarks.md"
    report.render([Path("bench/results/cpu")], page)
    expected = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert page.read_text(encoding="utf-8") == expected
