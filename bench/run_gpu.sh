#!/usr/bin/env bash
# The GPU check in one command, for a machine with one NVIDIA GPU and no network:
#
#     bash bench/fetch_gpu_wheels.sh    # beforehand, where pip reaches PyPI: bench/wheels
#     bash bench/run_gpu.sh             # results in bench/results/gpu (OUT=... to change)
#
# First the test suite on the GPU columns of the matrix (CuPy, torch CUDA), which
# fails if a backend is not usable or a GPU test is skipped; then, one process each,
# the GPU benchmarks: xplayers on CuPy and on torch CUDA, PyTorch eager on CUDA,
# volume 2's AttentionSeq2seq step on CuPy and torch CUDA, volume 2's language-model
# step against torch CUDA nn.LSTM (bench/test_book2.py), and the GPU's GEMM and
# bandwidth limits, TF32 off. Everything ends within
# XPLAYERS_GPU_BUDGET seconds (default 450): a step runs for at most its cap or what
# is left, and one with under 10 s left is recorded as not run (exit 124).
#
# The machine needs python3 (PYTHON=... for another) with CuPy, a CUDA build of
# torch, pytest, pytest-benchmark, hypothesis and threadpoolctl. The wheels in
# bench/wheels (array-api-compat, array-api-extra, array-api-strict) are installed
# into a temporary folder first, so the machine needs no network; xplayers is
# imported from the source tree. Results in OUT:
#
#     <suite>-<backend>.json   summaries (bench/summary.py): statistics, no rounds
#     run.json                 each process's command, exit status, time; the GPU
#     raw.tar.gz               pytest-benchmark's own files, the logs, nvidia-smi
#
# Render them beside a CPU run (the CPU/GPU crossover needs both):
#
#     python bench/report.py bench/results/cpu bench/results/gpu
#
# Without a GPU it stops at once with one line on stderr and exit status 2.
set -u
cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-python3}"
OUT="${OUT:-bench/results/gpu}"
BUDGET="${XPLAYERS_GPU_BUDGET:-450}"
start=$SECONDS

die() {
    echo "run_gpu.sh: $*; nothing was run" >&2
    exit 2
}

command -v nvidia-smi > /dev/null || die "no NVIDIA GPU here (no nvidia-smi on PATH)"
gpu=$(nvidia-smi -L 2>&1 | head -n 1)
case "$gpu" in
    GPU\ *) ;;
    *) die "no NVIDIA GPU here (nvidia-smi -L: ${gpu:-no output})" ;;
esac

site=$(mktemp -d) || die "mktemp -d failed"
trap 'rm -rf "$site"' EXIT
shopt -s nullglob
wheels=(bench/wheels/*.whl)
if [ "${#wheels[@]}" -gt 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "${wheels[@]}" > "$site/pip.log" 2>&1 ||
        die "pip could not install bench/wheels: $(tail -n 1 "$site/pip.log")"
fi
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
modules=(array_api_compat array_api_extra array_api_strict cupy torch pytest pytest_benchmark
    hypothesis threadpoolctl)
missing=$("$PY" -c "
import importlib.util, sys
print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))" "${modules[@]}") ||
    die "$PY does not run"
[ -z "$missing" ] ||
    die "$PY lacks $missing (bash bench/fetch_gpu_wheels.sh puts the array_api_* ones in bench/wheels)"

export CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0 XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$OUT" || die "cannot make $OUT"
rm -rf "$OUT/raw" "$OUT/raw.tar.gz" "$OUT"/*.json
mkdir "$OUT/raw"
nvidia-smi > "$OUT/raw/nvidia-smi.txt" 2>&1
runs="$OUT/raw/runs.tsv"  # command, summary file, exit status, seconds
: > "$runs"
status=0

# step CAP LOG COMMAND...: run COMMAND with at most CAP seconds (less if the budget has
# less left), output to LOG; sets rc, and records the step in runs.tsv.
step() {
    local cap=$1 log=$2 shown=$3
    shift 3
    local left=$((BUDGET - (SECONDS - start))) t0=$SECONDS
    [ "$left" -lt "$cap" ] && cap=$left
    if [ "$cap" -lt 10 ]; then
        echo "not run: the budget of $BUDGET s is spent" > "$log"
        rc=124
    else
        timeout "$cap" "$@" > "$log" 2>&1
        rc=$?
    fi
    printf '%s\t%s\t%s\t%s\n' "$shown" "$(basename "$log" .log).json" "$rc" \
        "$((SECONDS - t0))" >> "$runs"
    echo "$shown: exit $rc in $((SECONDS - t0)) s"
}

tests=(-m pytest tests -p no:cacheprovider -q -rs "--backends=cupy,torch:cuda"
    --require-backends "--junitxml=$OUT/raw/tests.xml")
read -ra more <<< "${XPLAYERS_GPU_TEST_ARGS:-}"  # e.g. "-n 4" (pytest-xdist), "-x"
tests+=(${more[@]+"${more[@]}"})
XPLAYERS_BACKEND='' step "${XPLAYERS_GPU_TEST_TIMEOUT:-210}" "$OUT/raw/tests.log" \
    "$PY ${tests[*]:0:9}${more[*]:+ ${more[*]}}" "$PY" "${tests[@]}"
[ "$rc" -eq 0 ] || status=1
# A GPU test that skips (its backend not usable, a library missing) fails the check.
"$PY" - "$OUT/raw/tests.xml" <<'EOF' || status=1
import re, sys, xml.etree.ElementTree as ET
try:
    cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
except (OSError, ET.ParseError) as exc:
    sys.exit(f"GPU tests: no report ({exc})")
counts = {}
for case in cases:
    m = re.search(r"\[(cupy|torch:cuda)[-\]]", case.get("name", ""))
    if m:
        kind = "skipped" if case.find("skipped") is not None else "ran"
        counts.setdefault(m.group(1), {"ran": 0, "skipped": 0})[kind] += 1
bad = [f"{b}: {c['skipped']} skipped" for b, c in counts.items() if c["skipped"]]
bad += [f"{b}: no test ran" for b in ("cupy", "torch:cuda") if not counts.get(b, {}).get("ran")]
print("GPU tests:", ", ".join(f"{b} {c['ran']} ran, {c['skipped']} skipped" for b, c in counts.items()))
sys.exit("GPU tests incomplete: " + "; ".join(bad) if bad else 0)
EOF

for run in "cupy xplayers 120" "torch:cuda xplayers 120" "torch:cuda torch_eager 60" \
    "cupy book2_seq2seq 40" "torch:cuda book2_seq2seq 40" "torch:cuda book2 60" \
    "cupy limits 45" "torch:cuda limits 45"; do
    read -r backend suite cap <<< "$run"
    stem="$suite-${backend/:/-}"
    XPLAYERS_BACKEND=$backend step "$cap" "$OUT/raw/$stem.log" \
        "XPLAYERS_BACKEND=$backend $PY -m pytest bench/test_$suite.py" \
        "$PY" -m pytest "bench/test_$suite.py" -p no:cacheprovider -q -rs --benchmark-only \
        --benchmark-disable-gc --benchmark-max-time=0.05 --benchmark-min-rounds=5 \
        "--benchmark-json=$OUT/raw/$stem.json"
    [ "$rc" -eq 0 ] || status=1
done

"$PY" bench/summary.py "$OUT" || status=1
"$PY" - "$OUT" "$gpu" "$((SECONDS - start))" <<'EOF' || status=1
import json, sys, time
from pathlib import Path

out, gpu, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
runs = []
for line in (out / "raw" / "runs.tsv").read_text().splitlines():
    command, summary, rc, took = line.split("\t")
    summary = summary if (out / summary).is_file() else None  # the tests write none
    runs.append({"command": command, "json": summary, "exit": int(rc), "seconds": float(took)})
run = {
    "command": "bash bench/run_gpu.sh",
    "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() - seconds)),
    "gpu": gpu,
    "runs": runs,
    "seconds": seconds,
}
(out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
EOF
# one archive for the rounds and the logs, so the results are a handful of files
tar -czf "$OUT/raw.tar.gz" -C "$OUT" raw && rm -rf "$OUT/raw" || status=1
echo "run_gpu.sh: exit $status in $((SECONDS - start)) s; results in $OUT"
exit $status
