"""CUDA C kernels for CuPy arrays: compiled once per source, kernel and scalar type.

A GPU kernel is a CUDA C source string in the module of its CPU twin, written for a
scalar type ``T`` (``float`` or ``double``, from the arrays' dtype). ``launch`` compiles
it on first use with CuPy's ``RawKernel`` (NVRTC) and runs one thread per element:

    extern "C" __global__ void negate(const long long count, const T* x, T* out) {
        FOR_EACH(k, count) out[k] = -x[k];
    }

    _cuda.launch(SOURCE, "negate", x.dtype, x.size, x, out)

``FOR_EACH`` is a grid-stride loop, so any ``count`` fits a grid of at most
``MAX_BLOCKS`` blocks. Arguments are C-contiguous arrays (a kernel sees only the data
pointer) and NumPy scalars whose type matches the parameter exactly. Kernels are built
without FMA contraction (``--fmad=false``) so they round like their CPU twins: switches
and the NMS mask equal the CPU's bit for bit, and sums agree where they add in the same
order.

``compiler`` is the one place where CuPy compiles; the tests put a CPU emulation of
CUDA there (tests/cuda_emulation.py), which runs every kernel's source and its Python
wrapper on NumPy arrays without a GPU.
"""

from __future__ import annotations

import numpy as np

SCALARS = {"float32": "float", "float64": "double"}
OPTIONS = ("--fmad=false",)
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535

PRELUDE = r"""
#define FOR_EACH(k, count) \
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < (count); \
         k += (long long)blockDim.x * gridDim.x)
"""


def _cupy_raw_kernel(source: str, name: str, options: tuple):
    import cupy

    return cupy.RawKernel(source, name, options=options)


compiler = _cupy_raw_kernel
_compiled = {}


def kernel(source: str, name: str, dtype):
    """The compiled kernel ``name`` of ``source`` for arrays of ``dtype`` (float32 or float64)."""
    scalar = SCALARS.get(np.dtype(dtype).name)
    if scalar is None:
        raise TypeError(
            f"CUDA kernel {name}: dtype must be float32 or float64, got {np.dtype(dtype)}"
        )
    key = (compiler, source, name, scalar)
    if key not in _compiled:
        _compiled[key] = compiler(f"typedef {scalar} T;\n{PRELUDE}\n{source}", name, OPTIONS)
    return _compiled[key]


def int32s(*values) -> tuple:
    """``values`` as NumPy int32 scalars, for kernel parameters declared ``int``."""
    return tuple(np.int32(v) for v in values)


def launch(source: str, name: str, dtype, count: int, *args) -> None:
    """Run kernel ``name`` over ``count`` elements: its first parameter is ``const long long
    count``, the rest are ``args``. Nothing runs when ``count`` is 0."""
    if count <= 0:
        return
    blocks = min((count + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK, MAX_BLOCKS)
    kernel(source, name, dtype)((blocks,), (THREADS_PER_BLOCK,), (np.int64(count),) + tuple(args))
