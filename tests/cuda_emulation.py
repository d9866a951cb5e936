"""CUDA kernels on the CPU: the GPU kernels' sources and wrappers, tested without a GPU.

``EmulatedKernel(source, name, options)`` stands in for ``cupy.RawKernel``. It checks the
source with NVRTC, the compiler CuPy uses, where the ``nvidia-cuda-nvrtc`` wheel is
installed, then compiles it as C++20 with g++, CUDA's built-ins defined so that one CPU
thread plays one CUDA thread. A launch takes what CuPy takes, ``(grid, block, args)``,
with NumPy arrays (C-contiguous: a kernel sees only the data pointer) and NumPy scalars.

Blocks run one after another, and one launch at a time. A kernel that calls ``__syncthreads``
runs each block's threads as fibers (``ucontext``) on one OS thread: each runs to its next
barrier, then the next thread, so a round over the block is one ``__syncthreads``
(``__shared__`` arrays are static, so the threads of a block share them). Threads of a block
that wait at different ``__syncthreads`` are reported, as they would hang or misbehave on a GPU.
Any other kernel runs its threads as a plain loop.
Each argument's type is checked against the kernel's parameter at compile time, because
a mismatch would garble a real launch (CuPy passes the bytes as they are), and a grid
outside CUDA's limits (an empty one included) is refused as a GPU would.

Each array argument runs in a copy between guard bands of poison: a write out of bounds (within
4 KiB) is reported, and a read there brings NaN (all bits set, for integers) into the results.
Each launch runs twice, on copies, with blocks and threads once in order and once backwards:
results that differ are reported as a data race (``both_orders=False`` runs it once, for the
CuPy stand-in, whose tests are about the host's code rather than the kernels).

It is more lenient than a GPU in places: races that both orders hide go unseen, accesses far
out of bounds may go unseen or crash, threads that return before a __syncthreads the others
reach are let go, and exp and log round as glibc's (CUDA's differ by an ulp or two), so a
kernel using them would match the CPU here to the bit but not on a GPU. sqrt and division
round as on a GPU (IEEE, NVRTC's defaults).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading

import numpy as np

C_TYPES = {
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.int32): "int",
    np.dtype(np.int64): "long long",
    np.dtype(np.uint64): "unsigned long long",
    np.dtype(np.uint32): "unsigned int",
    np.dtype(np.bool_): "bool",
}

PRELUDE = r"""
#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <ucontext.h>
#include <vector>
struct dim3 { unsigned int x = 1, y = 1, z = 1; };
static dim3 blockIdx, blockDim, gridDim, threadIdx;
// A block whose kernel syncs runs its threads as fibers on this OS thread: each runs until its
// next __syncthreads (or its end), then the next one; a round over all of them is one barrier.
struct Fiber { ucontext_t context; std::vector<char> stack; dim3 index; int waits_at = 0; bool done = false; };
static std::vector<Fiber> fibers;
static ucontext_t scheduler;
static size_t running = 0;
static inline void sync_at(int line) {
    fibers[running].waits_at = line;
    swapcontext(&fibers[running].context, &scheduler);
}
#define __syncthreads() sync_at(__LINE__)
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
static void** fiber_arguments;
static void fiber_main() { run_thread(fiber_arguments); fibers[running].done = true; }
// One block's fibers, round after round; returns the source line of a __syncthreads that some
// threads wait at while others wait at another one (the block would hang or misbehave on a GPU), else 0.
static int run_block_as_fibers(void** a) {
    fiber_arguments = a;
    for (auto& f : fibers) {
        f.done = false;
        getcontext(&f.context);
        f.context.uc_stack = {f.stack.data(), 0, f.stack.size()};
        f.context.uc_link = &scheduler;
        makecontext(&f.context, fiber_main, 0);
    }
    for (bool live = true; live;) {
        live = false;
        int barrier = 0;
        for (running = 0; running < fibers.size(); ++running) {
            Fiber& f = fibers[running];
            if (f.done) continue;
            threadIdx = f.index;
            swapcontext(&scheduler, &f.context);
            if (f.done) continue;
            live = true;
            if (barrier && f.waits_at != barrier) return f.waits_at;
            barrier = f.waits_at;
        }
    }
    return 0;
}
static std::vector<dim3> indices_of(dim3 d) {  // x fastest, as CUDA numbers threads
    std::vector<dim3> all;
    for (unsigned z = 0; z < d.z; ++z) for (unsigned y = 0; y < d.y; ++y) for (unsigned x = 0; x < d.x; ++x)
        all.push_back({x, y, z});
    return all;
}
// backwards: blocks and threads in the reverse order, to find results that depend on the order.
extern "C" int launch(void** a, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                      int backwards) {
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, bz};
    std::vector<dim3> blocks = indices_of(gridDim), threads = indices_of(blockDim);
    if (backwards) {
        std::reverse(blocks.begin(), blocks.end());
        std::reverse(threads.begin(), threads.end());
    }
    if (SYNCS) {
        fibers = std::vector<Fiber>(threads.size());
        for (size_t k = 0; k < threads.size(); ++k) {
            fibers[k].index = threads[k];
            fibers[k].stack.resize(1 << 16);
        }
    }
    for (const dim3& block : blocks) {
        blockIdx = block;
        if (SYNCS) {
            if (int line = run_block_as_fibers(a)) return line;
        } else {
            for (const dim3& thread : threads) {
                threadIdx = thread;
                run_thread(a);
            }
        }
    }
    return 0;
}
"""

_ONE_LAUNCH_AT_A_TIME = threading.Lock()
# Libraries are named by a hash of their code, so one folder serves every process (the CuPy
# stand-in's subprocesses too) and a kernel compiles once per machine, not once per process.
_BUILD = pathlib.Path(tempfile.gettempdir(), f"minivision-cuda-emulation-{os.getuid()}")


def _c_type(arg) -> str:
    """The C type CuPy passes for a launch argument: ``T*`` for an array, ``T`` for a NumPy scalar."""
    if isinstance(arg, np.ndarray):
        if not arg.flags.c_contiguous:
            raise ValueError(
                f"a kernel argument of shape {arg.shape} is not C-contiguous; a kernel sees only its pointer"
            )
        return C_TYPES[arg.dtype] + "*"
    if isinstance(arg, np.generic):
        return C_TYPES[arg.dtype]
    raise TypeError(
        f"pass NumPy arrays or NumPy scalars to a kernel, so the C type is explicit; got {type(arg).__name__}"
    )


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
    if lib.nvrtcCreateProgram(
        ctypes.byref(program), source.encode(), f"{name}.cu".encode(), 0, None, None
    ):
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

    def __init__(self, source: str, name: str, options: tuple = (), *, both_orders: bool = True):
        if not re.search(rf'extern "C" __global__ void {name}\s*\(', source):
            raise ValueError(f'kernel {name} is not declared extern "C" __global__ in its source')
        if nvrtc_available():
            nvrtc_check(source, name, options)
        self.source, self.name, self.orders = source, name, (0, 1) if both_orders else (0,)
        self._libraries = {}

    def _library(self, types: tuple):
        if types not in self._libraries:
            checks = "\n".join(
                f"static_assert(matches<std::tuple_element_t<{k}, declared>, {t}>(), "
                f'"NAME: argument {k} is passed as {t}, the kernel declares another type");'
                for k, t in enumerate(types)
            )
            arguments = ", ".join(
                f"({t})a[{k}]" if t.endswith("*") else f"*({t}*)a[{k}]" for k, t in enumerate(types)
            )
            launcher = (
                LAUNCHER.replace("CHECKS", checks)
                .replace("ARGUMENTS", arguments)
                .replace("COUNT", str(len(types)))
                .replace("SYNCS", str(int("__syncthreads" in self.source)))
                .replace("NAME", self.name)
            )
            code = (
                PRELUDE + "#line 1\n" + self.source + launcher
            )  # __LINE__ and g++'s errors count from the source
            digest = hashlib.sha1(code.encode()).hexdigest()[:16]
            library = _BUILD / f"{digest}.so"
            if not library.exists():
                _BUILD.mkdir(exist_ok=True)
                with tempfile.TemporaryDirectory(
                    dir=_BUILD
                ) as work:  # then one atomic rename: no half-written library
                    cpp, built = pathlib.Path(work, "kernel.cpp"), pathlib.Path(work, "kernel.so")
                    cpp.write_text(code)
                    compiled = subprocess.run(
                        [
                            shutil.which("g++") or "g++",
                            "-std=c++20",
                            "-O1",
                            "-shared",
                            "-fPIC",
                            "-w",
                            str(cpp),
                            "-o",
                            str(built),
                        ],
                        capture_output=True,
                        text=True,
                    )
                    if compiled.returncode:
                        raise RuntimeError(
                            f"g++ failed on kernel {self.name}:\n{compiled.stderr[-4000:]}"
                        )
                    os.replace(built, library)
            self._libraries[types] = ctypes.CDLL(str(library))
        return self._libraries[types]

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        # CUDA's launch limits: a launch outside them fails on a GPU ("invalid configuration")
        if not (
            1 <= grid[0] < 2**31
            and all(1 <= g <= 65535 for g in grid[1:])
            and min(block) >= 1
            and block[0] * block[1] * block[2] <= 1024
        ):
            raise ValueError(f"{self.name}: no GPU launches grid {grid} with blocks {block}")
        library = self._library(tuple(_c_type(a) for a in args))
        scalars = [
            np.array(a) if isinstance(a, np.generic) else None for a in args
        ]  # kept alive during the call
        runs = []
        for backwards in self.orders:  # each on its own copies of the arrays
            guarded = {
                id(a): _Guarded(a) for a in args if isinstance(a, np.ndarray)
            }  # one per array, passed twice or not
            pointers = (ctypes.c_void_p * len(args))(
                *(
                    guarded[id(a)].pointer if isinstance(a, np.ndarray) else s.ctypes.data
                    for a, s in zip(args, scalars)
                )
            )
            with (
                _ONE_LAUNCH_AT_A_TIME
            ):  # the grid's built-ins are globals; minivision's worker threads may both launch
                diverged_at = library.launch(
                    pointers, *(ctypes.c_uint(v) for v in grid + block), ctypes.c_int(backwards)
                )
            if diverged_at:
                raise RuntimeError(
                    f"{self.name}: the threads of a block wait at different __syncthreads "
                    f"(one at line {diverged_at} of its source)"
                )
            runs.append(guarded)
        for k, a in enumerate(args):
            if isinstance(a, np.ndarray):
                results = [run[id(a)] for run in runs]
                for result in results:
                    result.check_bands(f"{self.name}: argument {k}")
                if len({result.inside.tobytes() for result in results}) > 1:
                    raise RuntimeError(
                        f"{self.name}: argument {k} depends on the order the threads run in: a data race "
                        f"(two threads write one element, or one reads another's without a barrier)"
                    )
                results[0].copy_back()


class _Guarded:
    """An array argument in a copy between two guard bands of poison (NaN for floats, all bits set
    otherwise): a write out of bounds changes a band and is reported; a read out of bounds
    brings NaN (or an absurd index) into the results, where the comparisons with the CPU see it."""

    BAND = 4096  # bytes on each side

    def __init__(self, array: np.ndarray):
        self.array = array
        band = self.BAND // array.itemsize
        self.buffer = np.empty(array.size + 2 * band, array.dtype)
        self.buffer.view(np.uint8)[:] = (
            0xFF  # all bits set: a NaN for floats, -1 or the maximum for integers
        )
        self.poison = self.buffer[:band].copy()
        self.inside = self.buffer[band : band + array.size]
        self.inside[:] = array.reshape(-1)
        self.pointer = self.inside.ctypes.data

    def check_bands(self, what: str) -> None:
        band = len(self.poison)
        for side, region in (
            ("before its start", self.buffer[:band]),
            ("past its end", self.buffer[band + self.array.size :]),
        ):
            if region.tobytes() != self.poison.tobytes():
                raise RuntimeError(
                    f"{what} (shape {self.array.shape}) was written out of bounds, {side}"
                )

    def copy_back(self) -> None:
        if (
            self.inside.tobytes() != self.array.tobytes()
        ):  # inputs stay untouched (they may be read-only)
            self.array.reshape(-1)[:] = self.inside


def emulate(monkeypatch) -> None:
    """Make minivision's CUDA kernels (``minivision._cuda``) run through ``EmulatedKernel``."""
    if shutil.which("g++") is None:
        import pytest

        pytest.skip("the CUDA emulation needs g++")
    from minivision import _cuda

    monkeypatch.setattr(_cuda, "compiler", EmulatedKernel)
