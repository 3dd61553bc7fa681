#!/usr/bin/env bash
# The GPU benchmarks in one command, for a machine with one NVIDIA GPU:
#
#     bash bench/run_gpu.sh                 # results in bench/results/gpu (OUT=... to change)
#
# Needs CuPy, a CUDA build of torch, pytest-benchmark and threadpoolctl; xplayers
# is imported from the source tree. xplayers on CuPy and on torch CUDA, PyTorch
# eager on CUDA and the GPU's GEMM and bandwidth limits, one process each, TF32
# off. Render them beside a CPU run (the CPU/GPU crossover needs both):
#
#     python bench/report.py bench/results/cpu bench/results/gpu
set -u
cd "$(dirname "$0")/.." || exit 2
OUT="${OUT:-bench/results/gpu}"
rm -rf "$OUT" && mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
status=0
for run in "cupy xplayers" "torch:cuda xplayers" "torch:cuda torch_eager" \
    "cupy limits" "torch:cuda limits"; do
    set -- $run
    stem="$2-${1/:/-}"
    start=$(date +%s)
    XPLAYERS_BACKEND=$1 timeout "${XPLAYERS_GPU_TIMEOUT:-240}" python -m pytest "bench/test_$2.py" \
        -p no:cacheprovider -q -rs --benchmark-only --benchmark-disable-gc \
        --benchmark-max-time=0.05 --benchmark-min-rounds=5 \
        --benchmark-json="$OUT/$stem.json" > "$OUT/$stem.log" 2>&1
    rc=$?
    echo "XPLAYERS_BACKEND=$1 pytest bench/test_$2.py: exit $rc in $(( $(date +%s) - start )) s"
    [ "$rc" -eq 0 ] || status=1
done
exit $status
