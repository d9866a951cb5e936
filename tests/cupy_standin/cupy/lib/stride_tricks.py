"""``cupy.lib.stride_tricks``: views of device arrays."""

import numpy as _np

from .. import _unwrap, _wrap


def as_strided(x, shape=None, strides=None):
    return _wrap(_np.lib.stride_tricks.as_strided(_unwrap(x), shape, strides))
