"""Numerical gradient checking, for students writing layers and for test suites.

``gradcheck(fn, inputs)`` compares backprop against central differences in float64:
both sides see the same random upstream gradient ``g`` (never all ones, so a backward
that sums where it should not is caught), i.e. they differentiate L(x) = <g, fn(x)>.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minivision.backend import get_array_module, to_numpy
from minivision.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


@dataclass
class GradcheckReport:
    """What a passing check measured: the largest relative error per checked input."""

    max_rel_error: dict = field(default_factory=dict)
    fast: bool = False

    def __str__(self) -> str:
        rows = ", ".join(f"input {i}: {e:.2e}" for i, e in self.max_rel_error.items())
        return f"gradcheck passed ({'one random direction' if self.fast else 'every element'}; max rel error {rows})"


def rel_error(a, b) -> float:
    """max over elements of |a - b| / max(1e-8, |a| + |b|): the figure course notebooks print."""
    a = to_numpy(a.data if isinstance(a, Tensor) else a).astype(np.float64)
    b = to_numpy(b.data if isinstance(b, Tensor) else b).astype(np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)), initial=0.0))


def _outputs(result) -> list:
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    for i, out in enumerate(outs):
        if not isinstance(out, Tensor):
            raise TypeError(
                f"gradcheck: fn must return a Tensor or a tuple of Tensors, output {i} is {type(out).__name__}"
            )
    return outs


def _objective(fn, inputs, upstream) -> float:
    """L = sum_k <g_k, out_k> evaluated without recording a graph."""
    with no_grad():
        outs = _outputs(fn(*inputs))
    return float(sum((out.data.astype(np.float64) * g).sum() for out, g in zip(outs, upstream)))


def gradcheck(
    fn,
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    fast: bool = False,
    seed: int = 0,
) -> GradcheckReport:
    """Check ``fn``'s backward against central differences.

    fn: takes the inputs, returns a Tensor or tuple of Tensors. inputs: a Tensor or a
    sequence; Tensors with ``requires_grad`` are checked (all floating ones when none is
    marked), each as a float64 copy. An element passes when
    |analytic - numeric| <= atol + rtol * |numeric|. ``fast=True`` checks one random
    direction per call (two evaluations of fn) instead of every element.
    Raises GradcheckError naming the input, the worst element, both values and the
    relative error; returns a GradcheckReport otherwise.
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.dtype.kind == "f"]
    if not checked:
        raise ValueError("gradcheck: inputs hold no floating-point Tensor to check")
    inputs = [
        Tensor(t.data.astype(np.float64), requires_grad=i in checked)
        if isinstance(t, Tensor) and t.dtype.kind == "f"
        else t
        for i, t in enumerate(inputs)
    ]
    rng = np.random.default_rng(seed)
    outs = _outputs(fn(*inputs))
    xp = get_array_module(outs[0].data)
    upstream = [xp.asarray(rng.standard_normal(o.shape)) for o in outs]
    for out, g in zip(outs, upstream):
        if out.requires_grad:
            out.backward(g.astype(out.dtype))
    analytic = {}
    for i in checked:
        grad = inputs[i].grad
        analytic[i] = (
            np.zeros(inputs[i].shape) if grad is None else to_numpy(grad.data).astype(np.float64)
        )
    if fast:
        return _check_direction(fn, inputs, checked, analytic, upstream, eps, atol, rtol, rng)
    report = GradcheckReport()
    for i in checked:
        numeric = _numeric_gradient(fn, inputs, i, upstream, eps)
        report.max_rel_error[i] = _compare(i, inputs[i].shape, analytic[i], numeric, atol, rtol)
    return report


def _numeric_gradient(fn, inputs, i, upstream, eps) -> np.ndarray:
    """dL/dx_i by central differences, one element at a time."""
    data = inputs[i].data
    flat = data.reshape(-1)  # a view: perturbing it perturbs the input
    numeric = np.zeros(flat.shape[0])
    for k in range(flat.shape[0]):
        original = float(flat[k])
        flat[k] = original + eps
        plus = _objective(fn, inputs, upstream)
        flat[k] = original - eps
        minus = _objective(fn, inputs, upstream)
        flat[k] = original
        numeric[k] = (plus - minus) / (2 * eps)
    return numeric.reshape(data.shape)


def _compare(i, shape, analytic, numeric, atol, rtol) -> float:
    excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    rel = np.abs(analytic - numeric) / np.maximum(1e-8, np.abs(analytic) + np.abs(numeric))
    if excess.size and excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), shape) if shape else ()
        raise GradcheckError(
            f"gradcheck failed for input {i} (shape {tuple(shape)}) at element {tuple(int(w) for w in worst)}: "
            f"analytic {analytic[worst]:.6g}, numeric {numeric[worst]:.6g}, relative error {rel[worst]:.3g} "
            f"({int((excess > 0).sum())} of {excess.size} elements outside atol={atol}, rtol={rtol})"
        )
    return float(rel.max(initial=0.0))


def _check_direction(
    fn, inputs, checked, analytic, upstream, eps, atol, rtol, rng
) -> GradcheckReport:
    """Compare <grad, v> with (L(x + eps v) - L(x - eps v)) / 2 eps for one random unit v."""
    directions = {i: rng.standard_normal(inputs[i].shape) for i in checked}
    norm = np.sqrt(sum((d * d).sum() for d in directions.values()))
    originals = {i: inputs[i].data.copy() for i in checked}
    xp = get_array_module(inputs[checked[0]].data)
    values = []
    for sign in (1.0, -1.0):
        for i in checked:
            inputs[i].data = originals[i] + xp.asarray(sign * eps * directions[i] / norm)
        values.append(_objective(fn, inputs, upstream))
    for i in checked:
        inputs[i].data = originals[i]
    numeric = (values[0] - values[1]) / (2 * eps)
    predicted = sum(float((analytic[i] * directions[i]).sum()) for i in checked) / norm
    rel = abs(predicted - numeric) / max(1e-8, abs(predicted) + abs(numeric))
    if abs(predicted - numeric) > atol + rtol * abs(numeric):
        raise GradcheckError(
            f"gradcheck (fast) failed for inputs {checked}: along a random direction the analytic "
            f"derivative is {predicted:.6g}, numeric {numeric:.6g}, relative error {rel:.3g}; "
            f"run with fast=False to find the wrong element"
        )
    return GradcheckReport({i: rel for i in checked}, fast=True)
