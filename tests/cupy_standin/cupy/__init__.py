"""A CuPy stand-in for the tests: NumPy arrays behind CuPy's rules, kernels emulated.

``pytest -m gpu`` with ``MINIVISION_CUPY_STANDIN=1`` puts this package first on
``sys.path`` (tests/conftest.py), so minivision's GPU code path runs on the CPU: every
``cupy`` array is an ``ndarray`` here that holds a NumPy array, and ``RawKernel`` is
tests/cuda_emulation.py's ``EmulatedKernel``. It enforces what CuPy refuses, which
NumPy would let pass:

- no implicit conversion to NumPy (``np.asarray(a)`` raises CuPy's TypeError; use ``.get()``);
- no NumPy array as an operand of a device op (CuPy copies over only index arrays, and values
  assigned through them; it also takes them as ``split`` bounds, ``take`` indices and shapes,
  where the stand-in is stricter than CuPy);
- reductions give 0-d device arrays, not NumPy scalars;
- ``.data`` is a device pointer, not an array, and there is no ``__index__``;
- ``bincount`` refuses an empty array.

It counts, in ``traffic``, the CuPy calls made and the copies between host and device, so
tests can bound the copies to the host, each of which makes the host wait for the GPU
(tests/test_gpu_traffic.py). It does not model CuPy's coverage of NumPy's API (a function
CuPy lacks still works here), its kernels' speed, or streams.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as _np
from numpy.lib.mixins import NDArrayOperatorsMixin as _Operators

__version__ = "14.0.0-standin"

# What a GPU would have done, counted: "calls" (device work: ufuncs, array functions and methods,
# advanced indexing, kernels), "to host" (a device-to-host copy, which waits for the GPU: .get(),
# float(), bool(), .item()...) and "to device" (a host-to-device copy). Reset it at will.
traffic = collections.Counter()

_IMPLICIT = (
    "Implicit conversion to a NumPy array is not allowed. "
    "Please use `.get()` to construct a NumPy array explicitly."
)


def _unwrap(value):
    """The NumPy value behind a device value; NumPy arrays are refused, as CuPy refuses them."""
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, _np.ndarray):
        raise TypeError(
            f"Unsupported type {type(value)}: a NumPy array cannot enter a CuPy operation "
            f"(move it with cupy.asarray first)"
        )
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _host_allowed(value):
    """``_unwrap`` for where CuPy takes NumPy arrays and copies them over (indices, assigned values)."""
    if isinstance(value, tuple):
        return tuple(_host_allowed(v) for v in value)
    return value if isinstance(value, _np.ndarray) else _unwrap(value)


def _parts(key) -> tuple:
    """The parts of an index: ``a[1, :, idx]`` has three."""
    return key if isinstance(key, tuple) else (key,)


def _assigned(key, value):
    """A value assigned at ``key``: CuPy copies a NumPy array over only for an array index
    (with slices alone it calls ``fill``, which takes a scalar)."""
    advanced = any(isinstance(p, (ndarray, _np.ndarray, list)) for p in _parts(key))
    if isinstance(value, _np.ndarray) and value.ndim and not advanced:
        raise TypeError(
            f"a NumPy array of shape {value.shape} cannot be assigned to a CuPy slice "
            f"(move it with cupy.asarray first)"
        )
    return _host_allowed(value)


def _count_indexing(key, value=None, assigned=False) -> None:
    """Count what ``a[key]`` (``= value``) costs: a call unless it is a view, a copy to the
    device for each NumPy array in the key or the value, and a copy to the host for a boolean
    mask (CuPy reads its number of True values back to size the result)."""
    parts = _parts(key)
    host = sum(isinstance(p, (_np.ndarray, list)) for p in parts) + isinstance(value, _np.ndarray)
    traffic["to device"] += host
    traffic["to host"] += sum(
        isinstance(p, (_np.ndarray, ndarray)) and p.dtype == bool for p in parts
    )
    if assigned or host or any(isinstance(p, ndarray) for p in parts):
        traffic["calls"] += 1


def _wrap(value):
    """NumPy results as device values: arrays and numeric scalars become ``ndarray``."""
    if isinstance(value, _np.ndarray):
        return ndarray._of(value)
    if isinstance(value, (_np.number, _np.bool_)):
        return ndarray._of(_np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _device_function(function):
    def call(*args, **kwargs):
        traffic["calls"] += 1
        return _wrap(function(*_unwrap(args), **_unwrap(kwargs)))

    call.__name__ = getattr(function, "__name__", "function")
    return call


def _host_conversion(convert):
    """An ``ndarray`` method that copies the values to the host (counted) and converts them."""

    def method(self, *args):
        traffic["to host"] += 1
        return convert(self._array, *args)

    return method


class _MemoryPointer:
    """What CuPy's ``ndarray.data`` is: a pointer to device memory, not the values."""

    def __init__(self, array):
        self.ptr = array.ctypes.data


class ndarray(_Operators):
    """A device array: a NumPy array that only device operations may read."""

    __slots__ = ("_array",)
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, order="C"):
        self._array = _np.empty(shape, dtype, order=order)

    @classmethod
    def _of(cls, array: _np.ndarray) -> "ndarray":
        out = cls.__new__(cls)
        out._array = array
        return out

    # --- what CuPy refuses
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    @property
    def data(self):
        return _MemoryPointer(self._array)

    # --- NumPy's protocols, with device operands only
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        traffic["calls"] += 1
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs)))

    def __array_function__(self, function, types, args, kwargs):
        traffic["calls"] += 1
        return _wrap(function(*_unwrap(args), **_unwrap(kwargs)))

    # --- host copies, on request
    def get(self, stream=None, order="C", out=None):
        traffic["to host"] += 1
        return _np.array(self._array, order=order)

    def set(self, array, stream=None):
        traffic["to device"] += 1
        self._array[...] = array

    tolist = _host_conversion(_np.ndarray.tolist)
    item = _host_conversion(_np.ndarray.item)
    __bool__ = _host_conversion(bool)
    __float__ = _host_conversion(float)
    __int__ = _host_conversion(int)
    __complex__ = _host_conversion(complex)
    __format__ = _host_conversion(format)

    @property
    def device(self):
        return cuda.Device(0)

    # --- indexing (CuPy copies NumPy index arrays and values to the device) and the rest
    def __getitem__(self, key):
        _count_indexing(key)
        return _wrap(self._array[_host_allowed(key)])

    def __setitem__(self, key, value):
        _count_indexing(key, value, assigned=True)
        self._array[_host_allowed(key)] = _assigned(key, value)

    def __getattr__(self, name):
        attribute = getattr(self._array, name)
        return _device_function(attribute) if callable(attribute) else _wrap(attribute)

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def __repr__(self):
        return repr(self._array).replace("array(", "cupy-standin array(", 1)

    def __copy__(self):
        return ndarray._of(self._array.copy())

    def __deepcopy__(self, memo):
        return ndarray._of(self._array.copy())

    def __reduce__(self):
        raise TypeError("a device array cannot be pickled here; .get() it first")

    __hash__ = None

    @property
    def T(self):
        return ndarray._of(self._array.T)

    @property
    def shape(self):
        return self._array.shape

    @shape.setter
    def shape(self, value):
        self._array.shape = value


class _UFunc:
    """A ufunc that takes device arrays (and scalars) only, as CuPy's do."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        traffic["calls"] += 1
        return _wrap(self._ufunc(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name):
        attribute = getattr(self._ufunc, name)
        return _device_function(attribute) if callable(attribute) else attribute


# --- moving between host and device
def asarray(a, dtype=None, order=None, blocking=False):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == _np.dtype(dtype) else a.astype(dtype)
    traffic["to device"] += 1
    return ndarray._of(_np.array(a, dtype=dtype, order=order or "K"))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, blocking=False):
    traffic["calls" if isinstance(obj, ndarray) else "to device"] += 1
    source = obj._array if isinstance(obj, ndarray) else obj
    return ndarray._of(
        _np.array(source, dtype=dtype, copy=True if copy else None, order=order, ndmin=ndmin)
    )


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    return a.get(order=order) if isinstance(a, ndarray) else _np.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


def bincount(x, weights=None, minlength=0):
    """CuPy's bincount reads the minimum and the maximum back to the host, so it refuses an empty array."""
    traffic["calls"] += 1
    traffic["to host"] += 2
    if _unwrap(x).size == 0:
        raise ValueError("zero-size array to reduction operation cupy_max which has no identity")
    return _wrap(_np.bincount(_unwrap(x), _unwrap(weights), minlength))


def ascontiguousarray(a, dtype=None):
    traffic["calls"] += 1
    return _wrap(_np.ascontiguousarray(_unwrap(a), dtype=dtype))


# --- kernels: CuPy's RawKernel, emulated on the CPU
def RawKernel(code, name, options=(), backend="nvrtc", translate_cucomplex=False, *, jitify=False):
    checkout = str(Path(__file__).resolve().parents[3])
    if checkout not in sys.path:  # a subprocess (the CLI's) may have only this package on its path
        sys.path.append(checkout)
    from tests.cuda_emulation import EmulatedKernel

    emulated = EmulatedKernel(
        code, name, tuple(options), both_orders=False
    )  # test_cuda_kernels checks the orders

    def launch(grid, block, args, shared_mem=0, stream=None, enable_cooperative_groups=False):
        traffic["calls"] += 1
        emulated(grid, block, tuple(_unwrap(a) for a in args), shared_mem)

    return launch


from . import cuda, lib  # noqa: E402  (lib uses _wrap and _unwrap above)

__all__ = [
    "RawKernel",
    "asarray",
    "array",
    "asnumpy",
    "ascontiguousarray",
    "bincount",
    "cuda",
    "get_array_module",
    "lib",
    "ndarray",
]


def __getattr__(name):
    """Everything else from NumPy: functions and ufuncs take device arrays only; types and
    constants are NumPy's own."""
    attribute = getattr(_np, name)
    if isinstance(attribute, _np.ufunc):
        return _UFunc(attribute)
    if callable(attribute) and not isinstance(attribute, type):
        return _device_function(attribute)
    return attribute
