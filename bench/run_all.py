"""Run every benchmark target in its own pytest process, then render the report.

Usage::

    python bench/run_all.py [full|quick|gpu] [options] [-- extra pytest arguments]

``full`` (the default) is the measurement run: every target usable here
(``python bench/machine.py --targets``), one pytest process each, with a pause
between processes, the ``OPENBLAS_*`` variables unset for the benchmark
processes only (see ``bench/README.md``), then ``bench/report.py`` renders
``docs/benchmarks.md``. ``quick`` is a smoke run of seconds per target
(``XPLAYERS_BENCH_QUICK=1``) whose report goes under the run folder unless
``--report`` says otherwise. ``gpu`` runs the GPU targets only (see
``bench/run_gpu.sh``). ``XPLAYERS_BENCH_QUICK=1`` in the environment selects
``quick`` when no plan is named.

Each run writes into its folder (default ``bench/results/<plan>-<date>``;
quick runs under ``bench/results/tmp/``, which git ignores):

* ``run.json``: the command, plan, pytest options, exclusion rules, the
  ``OPENBLAS_*`` variables unset, start and end, and per target its exit
  status, seconds, log and JSON file;
* ``machine.json``: ``python bench/machine.py`` (CPU, memory, libraries, GPUs);
* ``check.log``: the correctness check run first (every peer and backend trains
  like the book from the same weights; ``-k matches_book``);
* ``<kind>-<name>.json`` / ``.log`` / ``.coverage.json``: pytest-benchmark's
  JSON, the output of each target's process, and what its exclusion rules
  deselected and what skipped (also when nothing ran).

The exit status is 1 when a target or the check failed (exit status 5, a
target without tests, is not a failure), else 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Targets a GPU machine runs (``gpu`` plan), in run order.
GPU_TARGETS = (
    "backend:cupy",
    "backend:torch-cuda",
    "peer:torch-eager-cuda",
    "limits:cupy",
    "limits:torch-cuda",
)

#: What each plan runs. ``exclude`` is ``--bench-exclude`` (see ``bench/conftest.py``).
PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "max_time": 0.1,
        "min_rounds": 5,
        "pause": 2.0,
        "env": {},
        "exclude": "; ".join(
            [
                # array-api-strict and Dask: orders of magnitude slower per call at
                # large batches, and neither is a performance target
                "name=array-api-strict|dask,batch>2048",
                # single layers of the 784-1000-10 net at the largest batch: each
                # call is most of a training step; the step itself still runs
                "kind=layer,hidden=1000,batch>=32768",
                # float64 784-1000-10 layers: float32 shows the same code paths
                "kind=layer,hidden=1000,dtype=float64,batch>2048",
                # the float64 784-1000-10 step and its GEMMs at N = 32768 (together
                # about a fifth of the run); float32 covers that batch
                "kind=step|gemm,hidden=1000,dtype=float64,batch>=32768",
                # GEMMs of small steps: the step bound is compared at N >= 2048
                "kind=gemm,batch<512",
            ]
        ),
        # safety net: tests that would start later are skipped (and listed in the report)
        "budget": 30.0,
    },
    "quick": {
        "max_time": 0.01,
        "min_rounds": 3,
        "pause": 0.2,
        "env": {"XPLAYERS_BENCH_QUICK": "1"},
        "exclude": "",
        "budget": None,
    },
    "gpu": {
        "max_time": 0.05,
        "min_rounds": 5,
        "pause": 0.5,
        "env": {},
        "exclude": "; ".join(
            [
                # single layers at a subset of batches; every step batch runs
                "kind=layer,batch=8|32|512|8192",
                "kind=gemm,batch<512",
            ]
        ),
        "budget": 4.5,
    },
}

#: Environment variables removed for the benchmark processes (see bench/README.md).
UNSET_PREFIXES = ("OPENBLAS_",)


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def available_targets(env: dict[str, str]) -> list[str]:
    """``python bench/machine.py --targets``, in a child process (imports nothing here)."""
    out = subprocess.run(
        [sys.executable, str(HERE / "machine.py"), "--targets"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def bench_env(keep_openblas: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The environment of the benchmark processes, and the variables removed from it."""
    env = dict(os.environ)
    removed = {}
    if not keep_openblas:
        for key in list(env):
            if key.startswith(UNSET_PREFIXES):
                removed[key] = env.pop(key)
    env.setdefault("PYTHONHASHSEED", "0")
    return env, removed


def file_stem(target: str) -> str:
    """``backend:torch-cuda`` -> ``backend-torch-cuda`` (the JSON and log names)."""
    return target.replace(":", "-")


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip("= ") if lines else ""


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(
        prog="python bench/run_all.py",
        description="Run every benchmark target in its own process, then render the report.",
    )
    p.add_argument(
        "plan",
        nargs="?",
        choices=sorted(PLANS),
        help="default: full (quick when XPLAYERS_BENCH_QUICK=1)",
    )
    p.add_argument("--out", type=Path, help="result folder (default bench/results/<plan>-<date>)")
    p.add_argument("--targets", help="comma-separated targets (default: all usable here)")
    p.add_argument("--max-time", type=float, help="--benchmark-max-time (plan default)")
    p.add_argument("--min-rounds", type=int, help="--benchmark-min-rounds (plan default)")
    p.add_argument("--exclude", help="--bench-exclude rules (plan default; '' for none)")
    p.add_argument("--pause", type=float, help="seconds between target processes")
    p.add_argument(
        "--budget",
        type=float,
        help="minutes for all targets (plan default; 0: no limit); tests that would start "
        "later are skipped, and the report lists them",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=60.0,
        help="seconds a target's process may run past the budget before it is killed "
        "(default 60; its JSON is then lost)",
    )
    p.add_argument(
        "--target-timeout",
        type=float,
        default=3600.0,
        help="seconds before a target's process is killed (default 3600)",
    )
    p.add_argument(
        "--report",
        type=Path,
        help="markdown to render (full: docs/benchmarks.md; quick, gpu: <out>/benchmarks.md)",
    )
    p.add_argument("--no-report", action="store_true", help="do not render a report")
    p.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        help="another result folder to include in the report (e.g. a GPU run)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the correctness check")
    p.add_argument(
        "--keep-openblas-env", action="store_true", help="do not unset the OPENBLAS_* variables"
    )
    args = p.parse_args(argv)
    if args.plan is None:
        quick = os.environ.get("XPLAYERS_BENCH_QUICK", "").lower() in ("1", "true", "yes")
        args.plan = "quick" if quick else "full"
    return args, extra


def run(argv: list[str]) -> int:
    args, extra = parse_args(argv)
    plan = PLANS[args.plan]
    out: Path = args.out or (
        ROOT
        / "bench"
        / "results"
        / ("tmp" if args.plan == "quick" else "")
        / f"{args.plan}-{_stamp()}"
    )
    out.mkdir(parents=True, exist_ok=True)
    env, removed = bench_env(args.keep_openblas_env)
    env.update(plan["env"])
    exclude = plan["exclude"] if args.exclude is None else args.exclude
    env["XPLAYERS_BENCH_EXCLUDE"] = exclude
    if args.targets:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    elif args.plan == "gpu":
        usable = set(available_targets(env))
        targets = [t for t in GPU_TARGETS if t in usable]
    else:
        targets = available_targets(env)
    budget = plan["budget"] if args.budget is None else (args.budget or None)
    if not targets:
        print(
            f"bench: no target to run (plan {args.plan}); see python bench/machine.py --targets",
            file=sys.stderr,
        )
        return 1
    max_time = plan["max_time"] if args.max_time is None else args.max_time
    min_rounds = plan["min_rounds"] if args.min_rounds is None else args.min_rounds
    pause = plan["pause"] if args.pause is None else args.pause
    pytest_args = [
        "-p",
        "no:cacheprovider",
        "--benchmark-only",
        "--benchmark-disable-gc",
        f"--benchmark-min-rounds={min_rounds}",
        f"--benchmark-max-time={max_time}",
        "-q",
        *extra,
    ]
    command = shlex.join(["python", "bench/run_all.py", *argv])
    meta: dict[str, Any] = {
        "plan": args.plan,
        "command": command,
        "invoked_as": os.environ.get("XPLAYERS_BENCH_COMMAND") or command,
        "cwd": str(ROOT),
        "started": _now(),
        "targets": targets,
        "pytest": ["python", "-m", "pytest", "bench/", *pytest_args],
        "exclude": exclude,
        "knobs": {
            k: v
            for k, v in sorted(env.items())
            if k.startswith("XPLAYERS_BENCH_") and k != "XPLAYERS_BENCH_COMMAND"
        },
        "unset_env": removed,
        "budget_minutes": budget,
        "results": [],
    }
    meta_path = out / "run.json"

    def save() -> None:
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")

    save()
    print(f"bench: plan {args.plan}, {len(targets)} targets -> {out}", flush=True)
    if removed:
        print(f"bench: unset for the benchmark processes: {removed}", flush=True)
    t_start = time.monotonic()
    # The budget counts from here: the description and the check are part of it.
    deadline = None if budget is None else time.time() + 60 * budget
    with (out / "machine.json").open("w") as fh:
        subprocess.run(
            [sys.executable, str(HERE / "machine.py")], stdout=fh, env=env, cwd=ROOT, check=False
        )

    failed = False
    if not args.no_check:
        check_env = dict(env, XPLAYERS_BENCH_TARGETS=",".join(targets))
        with (out / "check.log").open("w") as log:
            t0 = time.monotonic()
            rc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "bench/",
                    "-k",
                    "matches_book",
                    "-p",
                    "no:cacheprovider",
                    "-q",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=check_env,
                cwd=ROOT,
                check=False,
            ).returncode
        meta["check"] = {
            "exit": rc,
            "seconds": round(time.monotonic() - t0, 1),
            "log": "check.log",
            "summary": _last_line(out / "check.log"),
        }
        save()
        print(
            f"bench: check (every implementation trains like the book): exit {rc} "
            f"({meta['check']['summary']})",
            flush=True,
        )
        failed |= rc not in (0, 5)

    for i, target in enumerate(targets):
        if i:
            time.sleep(pause)
        stem = file_stem(target)
        target_env = dict(
            env,
            XPLAYERS_BENCH_TARGETS=target,
            XPLAYERS_BENCH_COVERAGE=str(out / f"{stem}.coverage.json"),
        )
        timeout = args.target_timeout
        if deadline is not None:
            target_env["XPLAYERS_BENCH_DEADLINE"] = str(deadline)
            # a test running at the deadline may finish; one stuck past it may not
            timeout = min(timeout, max(deadline - time.time(), 0) + args.grace)
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "bench/",
            *pytest_args,
            f"--benchmark-json={out / (stem + '.json')}",
        ]
        t0 = time.monotonic()
        with (out / f"{stem}.log").open("w") as log:
            log.write(f"$ XPLAYERS_BENCH_TARGETS={target} {shlex.join(cmd)}\n")
            log.flush()
            try:
                rc = subprocess.run(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=target_env,
                    cwd=ROOT,
                    check=False,
                    timeout=timeout,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = 124
        seconds = time.monotonic() - t0
        last = _last_line(out / f"{stem}.log")
        meta["results"].append(
            {
                "target": target,
                "exit": rc,
                "seconds": round(seconds, 1),
                "json": f"{stem}.json" if (out / f"{stem}.json").exists() else None,
                "log": f"{stem}.log",
                "summary": last,
            }
        )
        save()
        print(f"bench: {target}: exit {rc} in {seconds:.0f} s ({last})", flush=True)
        failed |= rc not in (0, 5)

    meta["finished"] = _now()
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    save()
    print(f"bench: all targets done in {meta['seconds'] / 60:.1f} min", flush=True)

    if not args.no_report:
        report = args.report or (
            ROOT / "docs" / "benchmarks.md" if args.plan == "full" else out / "benchmarks.md"
        )
        cmd = [
            sys.executable,
            str(HERE / "report.py"),
            str(out),
            *(str(p) for p in args.also),
            "--output",
            str(report),
        ]
        rc = subprocess.run(cmd, cwd=ROOT, check=False).returncode
        failed |= rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
