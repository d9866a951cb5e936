"""Helpers for parity tests against PyTorch (skipped cleanly where torch is missing), and
for loading the benchmark scripts."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

import minivision as mv

# Parity tests run on each of these: the "cuda" case moves both libraries' inputs to the GPU
# (PyTorch CUDA as the reference) and is selected by ``pytest -m gpu``.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not mv.cuda_available(), reason="needs CuPy and a CUDA GPU"),
        ],
    ),
]


def torch_or_skip():
    """The torch module, or skip the calling test when it is not installed."""
    return pytest.importorskip("torch")


def to_torch(array, requires_grad=False):
    """A float64/int64 torch tensor with the same values as a NumPy array."""
    torch = torch_or_skip()
    return torch.tensor(np.asarray(array), requires_grad=requires_grad)


def assert_close(actual, expected, rtol=1e-7, atol=1e-9, what="value"):
    """Compare a minivision/NumPy value with a torch/NumPy one, naming what is compared."""
    if hasattr(actual, "numpy") and not isinstance(actual, np.ndarray):
        actual = actual.detach().numpy() if hasattr(actual, "detach") else actual.numpy()
    if hasattr(expected, "detach"):
        expected = expected.detach().cpu().numpy()
    np.testing.assert_allclose(
        np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol, err_msg=what
    )


def check_parity(mv_fn, torch_fn, arrays, rng, rtol=1e-7, atol=1e-9, device="cpu"):
    """Run both functions on float64 copies of ``arrays`` on ``device``, push the same random
    upstream gradient through both, and compare the outputs and every input's gradient."""
    torch = torch_or_skip()
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs PyTorch built with CUDA for the reference")
    mv_inputs = [mv.tensor(np.array(a), device=device, requires_grad=True) for a in arrays]
    th_inputs = [to_torch(a).to(device).requires_grad_() for a in arrays]
    out = mv_fn(*mv_inputs)
    expected = torch_fn(*th_inputs)
    assert_close(out, expected, rtol, atol, what="forward")
    upstream = rng.standard_normal(tuple(expected.shape))
    out.backward(mv.tensor(upstream, dtype=out.dtype, device=device))
    expected.backward(torch.tensor(upstream, device=device))
    for i, (m, t) in enumerate(zip(mv_inputs, th_inputs)):
        expected_grad = t.grad if t.grad is not None else torch.zeros_like(t)
        actual_grad = m.grad if m.grad is not None else np.zeros(m.shape)
        assert_close(actual_grad, expected_grad, rtol, atol, what=f"gradient of input {i}")


REPO = Path(__file__).resolve().parents[1]


def subprocess_env(**extra) -> dict:
    """The environment for a Python subprocess that imports this checkout first (then whatever
    PYTHONPATH already held: the CuPy stand-in, in a stand-in run), plus ``extra``."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def benchmark_module(name: str):
    """benchmarks/<name>.py loaded as a module (the folder is scripts, not a package)."""
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
