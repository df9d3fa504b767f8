#!/usr/bin/env bash
# Every GPU measurement the course stores, in one run on a machine with an NVIDIA GPU:
#
#     bash bench/gpu_measure.sh OUTDIR
#
# writes into OUTDIR:
#   ref/lab01_refs.npz, ref/lab01_refs_meta.json    Lab 01's references on CUDA, TF32 off
#                                                    (copy both into source/lab01_kv_cache/ref/)
#   tf32/lab01_refs.npz, tf32/lab01_refs_meta.json  the same with TF32 on, only to measure its error
#                                                    (python -m tools.calibrate_lab01 --tf32-refs ...)
#   gpu_roofline.json                                Lab 02's GPU roofs and attention points
#   gpu_lab01_bench.json, bench_lab01_cuda.txt       Lab 01's benchmark on the GPU (data and table)
#   log.txt                                          nvidia-smi and everything the steps printed
# Copy the two JSON files into course_lib/data/: the notebooks plot them beside the student's
# own CPU measurements. Needs python3 with torch (CUDA), numpy, pandas; transformers for the
# benchmark's Hugging Face column. A step that fails does not stop the others.
set -u
out=${1:?usage: bash bench/gpu_measure.sh OUTDIR}
device=${DEVICE:-cuda}
py=${PYTHON:-python3}
mkdir -p "$out/ref" "$out/tf32"
log="$out/log.txt"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

step() {  # step NAME COMMAND...: run, log, and report the exit status without stopping
    local name=$1; shift
    echo "=== $name: $*" | tee -a "$log"
    local t0=$SECONDS
    "$@" >>"$log" 2>&1
    echo "=== $name: exit $? after $((SECONDS - t0)) s" | tee -a "$log"
}

{ date -u; nvidia-smi || true; "$py" -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)"; } >>"$log" 2>&1
step references "$py" -m tools.references --device "$device" --out "$out/ref"
step references-tf32 "$py" -m tools.references --device "$device" --tf32 --out "$out/tf32"
step roofline "$py" bench/gpu_roofline.py --device "$device" --out "$out/gpu_roofline.json" ${ROOFLINE_ARGS:-}
step bench-lab01 bash -c "'$py' bench/bench_lab01.py --device '$device' ${BENCH_ARGS:---e2e-lengths 128 1024 10000} \
    --json '$out/gpu_lab01_bench.json' | tee '$out/bench_lab01_cuda.txt'"
tail -n 40 "$log"
