#!/usr/bin/env bash
# Download into bench/wheels the wheels bench/run_gpu.sh installs on a GPU machine
# that has CuPy, torch, pytest, pytest-benchmark, hypothesis and threadpoolctl but
# not xplayers' array-API packages, and no network to fetch them:
#
#     bash bench/fetch_gpu_wheels.sh           # here, where pip reaches PyPI
#
# They are pure-Python wheels (py3-none-any), for the machine's Python 3.12 (another
# with PYTHON_VERSION=3.11, ...), at the versions the CPU results were measured with;
# bench/wheels is ignored by git. Copy bench/ (or the repository) with its wheels to
# the GPU machine and run `bash bench/run_gpu.sh` there.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=bench/wheels
rm -rf "$dest"
mkdir -p "$dest"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "${PYTHON_VERSION:-3.12}" --dest "$dest" \
    array-api-compat==1.16.0 array-api-extra==0.11.5 array-api-strict==2.6.1
ls "$dest"
