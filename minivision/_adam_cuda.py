"""Adam's update for CuPy arrays in one CUDA kernel rather than about ten array ops per parameter.

The same operations in the same order and dtype as ``optim.Adam``'s array code, so the same result.
"""

from __future__ import annotations

import numpy as np

from minivision import _cuda
from minivision.backend import get_array_module

ADAM_SOURCE = r"""
extern "C" __global__ void adam(const long long count, T* p, const T* grad, T* m, T* v, const int decay,
                                const T weight_decay, const T beta1, const T one_minus_beta1, const T beta2,
                                const T one_minus_beta2, const T step_size, const T bias2_sqrt, const T eps) {
    FOR_EACH(k, count) {
        const T g = decay ? grad[k] + weight_decay * p[k] : grad[k];
        const T m_k = m[k] * beta1 + one_minus_beta1 * g;
        const T v_k = v[k] * beta2 + one_minus_beta2 * g * g;
        m[k] = m_k;
        v[k] = v_k;
        p[k] -= step_size * m_k / (sqrt(v_k) / bias2_sqrt + eps);
    }
}
"""


def adam_step(p, grad, m, v, weight_decay, beta1, beta2, step_size, bias2_sqrt, eps) -> None:
    """One Adam step in place on the C-contiguous CuPy arrays p, m, v (one dtype) given ``grad``."""
    xp = get_array_module(p)
    scalar = p.dtype.type
    _cuda.launch(
        ADAM_SOURCE,
        "adam",
        p.dtype,
        p.size,
        p,
        xp.ascontiguousarray(grad, dtype=p.dtype),
        m,
        v,
        np.int32(bool(weight_decay)),
        *(
            scalar(c)
            for c in (weight_decay, beta1, 1 - beta1, beta2, 1 - beta2, step_size, bias2_sqrt, eps)
        ),
    )
