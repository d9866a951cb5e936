#!/usr/bin/env bash
# The device check (issue 7): GPU tests and GPU benchmarks in one run, a short report under $OUT.
#
#     OUT=gpu_report bash benchmarks/gpu_check.sh        # on the GPU machine, from the repo root
#
# Installs nothing: the device image has CuPy, NumPy, Numba, PyTorch and torchvision. Tests
# that need an absent package (pycocotools, defusedxml) skip. Each step has its own time
# limit and the script goes on after a failure, so one run always leaves a full report.
set -u
OUT=${OUT:-gpu_report}
mkdir -p "$OUT"
export PYTHONPATH=.
export MPLBACKEND=Agg
export CUPY_TF32=0  # CuPy's matrix products in full float32, as PyTorch's with TF32 off

step() {  # step NAME SECONDS COMMAND...: run, keep stdout+stderr in $OUT/NAME.txt, note the exit status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}

step environment 30 python3 -c "
import platform, numpy, numba, cupy, torch
import minivision, minivision.functional as F
print('python', platform.python_version(), 'numpy', numpy.__version__, 'numba', numba.__version__)
print('cupy', cupy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion())
print('device', cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))
print('minivision imports; cuda available:', minivision.backend.cuda_available())
x = minivision.tensor(numpy.arange(16.0).reshape(1, 1, 4, 4))
print('a Numba CPU kernel runs:', F.max_pool2d(x, 2).numpy().ravel().tolist() == [5.0, 7.0, 13.0, 15.0])
"
# The limits add up to 550 s, within one device command (600 s); a normal run takes far less.
step pytest_gpu 200 python3 -m pytest -m gpu -q -rs -p no:cacheprovider
step bench_layers_cuda 100 python3 benchmarks/bench_layers.py --device cuda --repeats 7
step bench_boxes_cuda 60 python3 benchmarks/bench_boxes.py --device cuda --repeats 9
step bench_models_cuda 60 python3 benchmarks/bench_models.py --device cuda --steps 7
step bench_models_cpu 90 python3 benchmarks/bench_models.py --device cpu --steps 3
step targets 10 python3 benchmarks/gpu_targets.py
cp benchmarks/results/*.json "$OUT/" 2>/dev/null
tail -n 3 "$OUT/pytest_gpu.txt" >> "$OUT/summary.txt"
cat "$OUT/targets.txt" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
