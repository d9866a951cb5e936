"""The reference switch (``minivision.dispatch``) and a minivision without Numba."""

import json
import subprocess
import sys

import numpy as np
import pytest

import minivision as mv
import minivision.functional as F
import minivision.nn as nn
from tests.helpers import subprocess_env


def test_use_reference_sets_the_switch_and_a_with_block_restores_it():
    assert not mv.reference_enabled()
    with mv.use_reference(True):
        assert mv.reference_enabled()
        with mv.use_reference(False):
            assert not mv.reference_enabled()
        assert mv.reference_enabled()
    assert not mv.reference_enabled()
    try:
        mv.use_reference(True)  # called plainly: stays on
        assert mv.reference_enabled()
    finally:
        mv.use_reference(False)
    assert not mv.reference_enabled()


def test_use_reference_decorates_a_function():
    @mv.use_reference(True)
    def inside():
        return mv.reference_enabled()

    assert not mv.reference_enabled()
    assert inside() and not mv.reference_enabled()


def test_use_reference_names_what_it_was_given():
    with pytest.raises(TypeError, match=r"use_reference: mode must be True or False, got 'yes'"):
        mv.use_reference("yes")
    assert not mv.reference_enabled()


def _probe(value: str) -> subprocess.CompletedProcess:
    code = "import minivision as mv; print(mv.reference_enabled())"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(MINIVISION_REFERENCE=value),
    )


@pytest.mark.parametrize(
    "value, expected", [("1", "True"), ("on", "True"), ("0", "False"), ("", "False")]
)
def test_the_environment_variable_sets_the_switch_at_import(value, expected):
    result = _probe(value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_an_unknown_environment_value_is_refused_with_the_variable_named():
    result = _probe("maybe")
    assert result.returncode != 0
    assert "MINIVISION_REFERENCE must be one of" in result.stderr and "got 'maybe'" in result.stderr


class _Net(nn.Module):
    """Every routed layer once: conv, batch norm, ReLU, max pool and unpool, a transposed conv,
    bilinear upsampling, a softmax head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.head = nn.Conv2d(4, 5, 1)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        pooled, switches = F.max_pool2d(x, 2, return_indices=True)
        x = F.max_unpool2d(F.sigmoid(pooled), switches, 2) + x
        x = F.avg_pool2d(self.up(x), 2)
        return self.head(F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False))


def _loss_and_gradients(reference: bool):
    mv.manual_seed(0)
    net = _Net()
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
    for name in ("running_mean", "running_var"):
        setattr(net.bn, name, getattr(net.bn, name).astype(np.float64))
    x = mv.tensor(np.random.default_rng(1).normal(size=(2, 3, 12, 12)), dtype="float64")
    target = mv.tensor(np.random.default_rng(2).integers(0, 5, size=(2, 6, 6)))
    with mv.use_reference(reference):
        loss = F.cross_entropy(net(x), target)
        loss.backward()
    return loss.item(), [p.grad.numpy() for p in net.parameters()]


def test_a_network_of_routed_ops_trains_the_same_through_the_reference():
    fast_loss, fast_grads = _loss_and_gradients(False)
    ref_loss, ref_grads = _loss_and_gradients(True)
    np.testing.assert_allclose(ref_loss, fast_loss, rtol=1e-12)
    for fast, ref in zip(fast_grads, ref_grads, strict=True):
        np.testing.assert_allclose(ref, fast, rtol=1e-9, atol=1e-12)


_WITHOUT_NUMBA = """
import json, sys
sys.modules["numba"] = None  # `import numba` now raises ImportError
import minivision.tensor
import minivision as mv
import minivision.functional as F
import numpy as np
from minivision._numba import NUMBA_AVAILABLE
x = mv.tensor(np.random.default_rng(0).normal(size=(2, 3, 8, 8)), requires_grad=True)
w = mv.tensor(np.random.default_rng(1).normal(size=(4, 3, 3, 3)))
y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
y.sum().backward()
boxes = mv.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype="float32")
keep = mv.ops.nms(boxes, mv.tensor([0.9, 0.8, 0.7]), 0.5)
print(json.dumps({"numba": NUMBA_AVAILABLE, "out": y.numpy().ravel().tolist(),
                  "grad": x.grad.numpy().ravel().tolist(), "keep": keep.tolist()}))
"""


def test_minivision_imports_and_computes_without_numba():
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_NUMBA],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    x = mv.tensor(np.random.default_rng(0).normal(size=(2, 3, 8, 8)), requires_grad=True)
    w = mv.tensor(np.random.default_rng(1).normal(size=(4, 3, 3, 3)))
    y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
    y.sum().backward()
    assert found["numba"] is False
    np.testing.assert_allclose(found["out"], y.numpy().ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found["grad"], x.grad.numpy().ravel(), rtol=1e-5, atol=1e-6)
    assert found["keep"] == [0, 2]
