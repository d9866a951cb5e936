"""CUDA kernels on the CPU: the GPU kernels' sources and wrappers, tested without a GPU.

``EmulatedKernel(source, name, options)`` stands in for ``cupy.RawKernel``. It checks the
source with NVRTC, the compiler CuPy uses, where the ``nvidia-cuda-nvrtc`` wheel is
installed, then compiles it as C++20 with g++, CUDA's built-ins defined so that one CPU
thread plays one CUDA thread. A launch takes what CuPy takes, ``(grid, block, args)``,
with NumPy arrays (C-contiguous: a kernel sees only the data pointer) and NumPy scalars.

Blocks run one after another, and one launch at a time. A kernel that calls ``__syncthreads`` runs each block's
threads as OS threads that meet at a barrier (``__shared__`` arrays are static, so the
threads of a block share them); any other kernel runs its threads as a plain loop.
Each argument's type is checked against the kernel's parameter at compile time, because
a mismatch would garble a real launch (CuPy passes the bytes as they are), and a grid
outside CUDA's limits (an empty one included) is refused as a GPU would.

It is more lenient than a GPU in places: out-of-bounds accesses and data races go unseen,
a __syncthreads that only some threads reach does not hang, and exp and log round as
glibc's (CUDA's differ by an ulp or two), so a kernel using them would match the CPU here
to the bit but not on a GPU. sqrt and division round as on a GPU (IEEE, NVRTC's defaults).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading

import numpy as np

C_TYPES = {
    np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.int32): "int",
    np.dtype(np.int64): "long long", np.dtype(np.uint64): "unsigned long long", np.dtype(np.uint32): "unsigned int",
    np.dtype(np.bool_): "bool",
}

PRELUDE = r"""
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>
struct dim3 { unsigned int x = 1, y = 1, z = 1; };
static dim3 blockIdx, blockDim, gridDim;
static thread_local dim3 threadIdx;
static std::barrier<>* block_barrier = nullptr;
static inline void __syncthreads() { block_barrier->arrive_and_wait(); }
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__
static inline double __longlong_as_double(long long bits) { double d; std::memcpy(&d, &bits, 8); return d; }
// CUDA's math functions have float overloads: a float argument is computed in float, not double
using std::ceil;
using std::exp;
using std::fabs;
using std::floor;
using std::isnan;
using std::log;
using std::max;
using std::min;
using std::sqrt;
"""

LAUNCHER = r"""
template <class F> struct parameters;
template <class... A> struct parameters<void(A...)> { using type = std::tuple<A...>; };
template <class Declared, class Passed> constexpr bool matches() {
    if constexpr (std::is_pointer_v<Declared>)
        return std::is_pointer_v<Passed> &&
               std::is_same_v<std::remove_cv_t<std::remove_pointer_t<Declared>>, std::remove_pointer_t<Passed>>;
    else
        return std::is_same_v<std::remove_cv_t<Declared>, Passed>;
}
using declared = parameters<decltype(NAME)>::type;
static_assert(std::tuple_size_v<declared> == COUNT, "NAME: launched with COUNT arguments, declares another number");
CHECKS
static void run_thread(void** a) { NAME(ARGUMENTS); }
extern "C" void launch(void** a, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, bz};
    for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x) {
        blockIdx = {x, y, z};
        if (SYNCS) {
            std::barrier<> barrier(bx * by * bz);
            block_barrier = &barrier;
            std::vector<std::thread> threads;
            for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx)
                threads.emplace_back([=, &barrier] { threadIdx = {tx, ty, tz}; run_thread(a); barrier.arrive_and_drop(); });
            for (auto& t : threads) t.join();
        } else {
            for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx) {
                threadIdx = {tx, ty, tz};
                run_thread(a);
            }
        }
    }
}
"""

_ONE_LAUNCH_AT_A_TIME = threading.Lock()
_BUILD = pathlib.Path(tempfile.mkdtemp(prefix="minivision-cuda-emulation-"))


def _c_type(arg) -> str:
    """The C type CuPy passes for a launch argument: ``T*`` for an array, ``T`` for a NumPy scalar."""
    if isinstance(arg, np.ndarray):
        if not arg.flags.c_contiguous:
            raise ValueError(f"a kernel argument of shape {arg.shape} is not C-contiguous; a kernel sees only its pointer")
        return C_TYPES[arg.dtype] + "*"
    if isinstance(arg, np.generic):
        return C_TYPES[arg.dtype]
    raise TypeError(f"pass NumPy arrays or NumPy scalars to a kernel, so the C type is explicit; got {type(arg).__name__}")


@functools.lru_cache(maxsize=None)
def _nvrtc():
    """NVRTC's shared library from the nvidia-cuda-nvrtc wheel, or None where it is missing."""
    try:
        import nvidia.cu13  # noqa: F401  (the wheel's package)
    except ImportError:
        return None
    for path in pathlib.Path(nvidia.cu13.__path__[0], "lib").glob("libnvrtc.so*"):
        return ctypes.CDLL(str(path))
    return None


def nvrtc_available() -> bool:
    return _nvrtc() is not None


def nvrtc_check(source: str, name: str, options: tuple) -> None:
    """Compile ``source`` with NVRTC for compute capability 9.0 (H100/H200); raise with its log on failure."""
    lib = _nvrtc()
    program = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), f"{name}.cu".encode(), 0, None, None):
        raise RuntimeError(f"NVRTC could not create a program for {name}")
    flags = [b"--gpu-architecture=compute_90", *(o.encode() for o in options)]
    status = lib.nvrtcCompileProgram(program, len(flags), (ctypes.c_char_p * len(flags))(*flags))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(program, log)
    lib.nvrtcDestroyProgram(ctypes.byref(program))
    if status:
        raise RuntimeError(f"NVRTC failed on kernel {name}:\n{log.value.decode()}")


class EmulatedKernel:
    """``cupy.RawKernel(source, name, options=options)`` run on the CPU (see the module's docstring)."""

    def __init__(self, source: str, name: str, options: tuple = ()):
        if not re.search(rf'extern "C" __global__ void {name}\s*\(', source):
            raise ValueError(f"kernel {name} is not declared extern \"C\" __global__ in its source")
        if nvrtc_available():
            nvrtc_check(source, name, options)
        self.source, self.name = source, name
        self._libraries = {}

    def _library(self, types: tuple):
        if types not in self._libraries:
            checks = "\n".join(
                f'static_assert(matches<std::tuple_element_t<{k}, declared>, {t}>(), '
                f'"NAME: argument {k} is passed as {t}, the kernel declares another type");'
                for k, t in enumerate(types))
            arguments = ", ".join(f"({t})a[{k}]" if t.endswith("*") else f"*({t}*)a[{k}]" for k, t in enumerate(types))
            launcher = (LAUNCHER.replace("CHECKS", checks).replace("ARGUMENTS", arguments)
                        .replace("COUNT", str(len(types))).replace("SYNCS", str(int("__syncthreads" in self.source)))
                        .replace("NAME", self.name))
            code = PRELUDE + self.source + launcher
            digest = hashlib.sha1(code.encode()).hexdigest()[:16]
            cpp, library = _BUILD / f"{digest}.cpp", _BUILD / f"{digest}.so"
            if not library.exists():
                cpp.write_text(code)
                compiled = subprocess.run([shutil.which("g++") or "g++", "-std=c++20", "-O1", "-shared", "-fPIC",
                                           "-pthread", "-w", str(cpp), "-o", str(library)],
                                          capture_output=True, text=True)
                if compiled.returncode:
                    raise RuntimeError(f"g++ failed on kernel {self.name}:\n{compiled.stderr[-4000:]}")
            self._libraries[types] = ctypes.CDLL(str(library))
        return self._libraries[types]

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        # CUDA's launch limits: a launch outside them fails on a GPU ("invalid configuration")
        if not (1 <= grid[0] < 2**31 and all(1 <= g <= 65535 for g in grid[1:]) and min(block) >= 1
                and block[0] * block[1] * block[2] <= 1024):
            raise ValueError(f"{self.name}: no GPU launches grid {grid} with blocks {block}")
        library = self._library(tuple(_c_type(a) for a in args))
        scalars = [np.array(a) if isinstance(a, np.generic) else None for a in args]  # kept alive during the call
        pointers = (ctypes.c_void_p * len(args))(*(
            a.ctypes.data if isinstance(a, np.ndarray) else s.ctypes.data for a, s in zip(args, scalars)))
        with _ONE_LAUNCH_AT_A_TIME:  # the grid's built-ins are globals; minivision's worker threads may both launch
            library.launch(pointers, *(ctypes.c_uint(v) for v in grid + block))


def emulate(monkeypatch) -> None:
    """Make minivision's CUDA kernels (``minivision._cuda``) run through ``EmulatedKernel``."""
    if shutil.which("g++") is None:
        import pytest

        pytest.skip("the CUDA emulation needs g++")
    from minivision import _cuda

    monkeypatch.setattr(_cuda, "compiler", EmulatedKernel)
