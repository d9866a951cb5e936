"""interpolate (nearest, bilinear with and without align_corners) as an op: PyTorch parity on
every device and bad input. Gradchecks, hand-worked examples and the reference's own tests
are in tests/reference/test_upsample.py."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from tests.helpers import DEVICES, check_parity, torch_or_skip

torch = None


def setup_module():
    global torch
    torch = torch_or_skip()


MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode,align_corners", MODES)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)),
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    seed=st.integers(0, 2**16),
)
def test_interpolate_to_a_size_matches_torch(mode, align_corners, shape, size, seed, device):
    rng = np.random.default_rng(seed)
    kw = dict(size=size, mode=mode, align_corners=align_corners)
    check_parity(
        lambda a: F.interpolate(a, **kw),
        lambda a: torch.nn.functional.interpolate(a, **kw),
        [rng.standard_normal(shape)],
        rng,
        device=device,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode,align_corners", MODES)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(2, 6), st.integers(2, 6)),
    scale=st.tuples(
        st.sampled_from([0.5, 0.75, 1.5, 2.0, 2.5, 3.0]), st.sampled_from([0.6, 1.0, 2.0, 2.2])
    ),
    recompute=st.sampled_from([None, True]),
    seed=st.integers(0, 2**16),
)
def test_interpolate_by_a_scale_factor_matches_torch(
    mode, align_corners, shape, scale, recompute, seed, device
):
    rng = np.random.default_rng(seed)
    kw = dict(
        scale_factor=scale, mode=mode, align_corners=align_corners, recompute_scale_factor=recompute
    )
    check_parity(
        lambda a: F.interpolate(a, **kw),
        lambda a: torch.nn.functional.interpolate(a, **kw),
        [rng.standard_normal(shape)],
        rng,
        device=device,
    )


@pytest.mark.parametrize(
    "kw,error,message",
    [
        (dict(scale_factor=2, mode="bicubic"), ValueError, "mode must be one of"),
        (
            dict(scale_factor=2, align_corners=True),
            ValueError,
            "align_corners can only be set with mode='bilinear'",
        ),
        (dict(), ValueError, "give exactly one of size and scale_factor"),
        (dict(size=4, scale_factor=2), ValueError, "give exactly one of size and scale_factor"),
        (
            dict(size=(0, 3)),
            ValueError,
            r"size must be a positive number or a pair of them, got \(0, 3\)",
        ),
        (dict(scale_factor=0.1), ValueError, "shrinks input"),
    ],
)
def test_interpolate_bad_input(kw, error, message):
    with pytest.raises(error, match=message):
        F.interpolate(mv.Tensor(np.zeros((1, 1, 4, 4))), **kw)


def test_interpolate_needs_nchw():
    with pytest.raises(ValueError, match=r"input must have shape \(N, C, H, W\), got \(1, 4, 4\)"):
        F.interpolate(mv.Tensor(np.zeros((1, 4, 4))), scale_factor=2)
