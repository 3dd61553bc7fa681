#!/usr/bin/env bash
# GPU tests and benchmarks in one command, for a machine with one NVIDIA GPU.
#
#     bash bench/run_gpu.sh            # from the repository root (or anywhere)
#     OUT=/some/folder bash bench/run_gpu.sh
#
# Needs CuPy, a CUDA build of torch, pytest and pytest-benchmark installed; no
# network. When a wheels/ folder sits at the repository root, array-api-compat
# and whichever of array-api-strict, hypothesis, threadpoolctl, py-cpuinfo and
# pytest-benchmark have a wheel there are installed from it first (pip
# --no-index). xplayers itself is imported from the source tree (no install).
#
# Steps, about 8 minutes at most in all:
#   1. nvidia-smi and the machine description      -> $OUT/nvidia-smi.txt, machine.json
#   2. the test suite on cupy and torch:cuda        -> $OUT/tests.log  (3 minutes at most)
#   3. the GPU benchmark targets (backend:cupy, backend:torch-cuda, peer:torch-eager-cuda,
#      limits:cupy, limits:torch-cuda), one process each, through
#      `python bench/run_all.py gpu`                -> $OUT/<target>.json/.log, run.json
#      (whatever time is left, 4.5 minutes at most; tests that would start later are
#      skipped and listed in the report)
#   4. $OUT/summary.txt: exit status and seconds of each step.
#
# TF32 is off everywhere: CUPY_TF32=0 and NVIDIA_TF32_OVERRIDE=0 here, and the
# benchmarks clear torch.backends.cuda.matmul.allow_tf32. JAX, if present, does
# not preallocate GPU memory (XLA_PYTHON_CLIENT_PREALLOCATE=false).
#
# Bring $OUT back and render it with the CPU run:
#     python bench/report.py bench/results/<cpu-run> bench/results/gpu --output docs/benchmarks.md
# The exit status is 0 only when the tests and every benchmark target passed.

set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
OUT="${OUT:-bench/results/gpu}"
PY="${PYTHON:-python}"
TOTAL_S="${XPLAYERS_GPU_TOTAL_S:-480}"   # the whole script
TESTS_S="${XPLAYERS_GPU_TESTS_S:-180}"   # step 2 at most
mkdir -p "$OUT"
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

export CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0 XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export XPLAYERS_BACKEND=""

SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
note "run_gpu.sh started $(date -Is) in $ROOT, results in $OUT"

# 0. wheels shipped beside the tree (no network)
if [ -d wheels ]; then
    pkgs="array-api-compat"
    for name in array-api-strict hypothesis threadpoolctl py-cpuinfo pytest-benchmark; do
        if ls wheels/ | grep -qi "^${name//-/_}-.*\.whl$"; then pkgs="$pkgs $name"; fi
    done
    "$PY" -m pip install --no-index --find-links wheels/ $pkgs > "$OUT/pip.log" 2>&1
    note "pip install --no-index --find-links wheels/ $pkgs: exit $?"
fi

# 1. the machine
{ nvidia-smi; echo; nvidia-smi -q; } > "$OUT/nvidia-smi.txt" 2>&1
note "nvidia-smi: exit $? ($(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1))"
"$PY" bench/machine.py > "$OUT/machine.json" 2> "$OUT/machine.err"
"$PY" - > "$OUT/versions.txt" 2>&1 <<'EOF'
import importlib
for name in ("numpy", "array_api_compat", "cupy", "torch", "jax", "pytest", "pytest_benchmark"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        print(name, "NOT IMPORTABLE:", exc)
import torch
print("torch.cuda", torch.version.cuda, torch.cuda.is_available())
EOF

# 2. the test suite on the GPU backends
# test modules importing a test-only library that is not installed are left out
ignore=()
for mod in hypothesis array_api_strict; do
    if ! "$PY" -c "import $mod" 2> /dev/null; then
        for f in $(grep -l -E "^(import|from) $mod" tests/*.py); do
            ignore+=(--ignore="$f")
            note "$mod is not installed: $f is left out"
        done
    fi
done
t0=$(elapsed)
timeout "$TESTS_S" "$PY" -m pytest --backends=cupy,torch:cuda --require-backends -q \
    -p no:cacheprovider ${ignore[@]+"${ignore[@]}"} > "$OUT/tests.log" 2>&1
tests_rc=$?
note "tests (pytest --backends=cupy,torch:cuda --require-backends): exit $tests_rc in $(( $(elapsed) - t0 )) s: $(tail -n 1 "$OUT/tests.log")"

# 3. the benchmarks, in the time left (40 s kept for a stuck target and the end)
left=$(( TOTAL_S - $(elapsed) - 40 ))
budget_s=$(( left < 270 ? left : 270 ))
if [ "$budget_s" -lt 30 ]; then
    note "benchmarks: not run, only ${left} s left"
    bench_rc=1
else
    t0=$(elapsed)
    timeout $(( budget_s + 40 )) "$PY" bench/run_all.py gpu --out "$OUT" --no-report \
        --budget "$(awk "BEGIN {print $budget_s / 60}")" --grace 20 > "$OUT/bench.log" 2>&1
    bench_rc=$?
    note "benchmarks (python bench/run_all.py gpu, budget ${budget_s} s): exit $bench_rc in $(( $(elapsed) - t0 )) s"
    grep '^bench: ' "$OUT/bench.log" | tee -a "$SUMMARY"
fi

note "run_gpu.sh finished $(date -Is) after $(elapsed) s"
ls -la "$OUT" >> "$SUMMARY"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
