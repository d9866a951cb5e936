"""Strided convolutions whose kernel is a multiple of the stride run as stride-1 convolutions
over the input's phases: exact against PyTorch, and the rearrangements are adjoint pairs."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision.functional import _conv_fast
from minivision.functional import _space_to_depth as phases
from minivision.functional._geometry import Windows
from tests.helpers import DEVICES, check_parity, torch_or_skip


@pytest.fixture(autouse=True, scope="module")
def fast_path():
    """These tests are about a fast path: it runs even under MINIVISION_REFERENCE=1."""
    with mv.use_reference(False):
        yield


@st.composite
def phase_cases(draw):
    """Kernel t * s on each axis, stride s >= 2 on at least one, any padding below the kernel."""
    stride = (draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    if draw(st.booleans()):
        stride = stride[::-1]
    taps = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    kernel = tuple(t * s for t, s in zip(taps, stride))
    groups = draw(st.integers(1, 2))
    case = dict(
        n=draw(st.integers(1, 2)),
        c_in=groups * draw(st.integers(1, 2)),
        c_out=groups * draw(st.integers(1, 2)),
        h=draw(st.integers(1, 9)),
        w=draw(st.integers(1, 9)),
        kernel=kernel,
        stride=stride,
        groups=groups,
        padding=tuple(draw(st.integers(0, k - 1)) for k in kernel),
        seed=draw(st.integers(0, 2**16)),
    )
    case["output_padding"] = tuple(draw(st.integers(0, s - 1)) for s in stride)
    return case


def _conv_out(case):
    return [
        n + 2 * p - k for n, p, k in zip((case["h"], case["w"]), case["padding"], case["kernel"])
    ]


@pytest.mark.parametrize("device", DEVICES)
@given(case=phase_cases())
def test_conv2d_over_phases_matches_torch(case, device):
    torch = torch_or_skip()
    assume(min(_conv_out(case)) >= 0)
    assert phases.applies(Windows(case["kernel"], case["stride"], case["padding"], (1, 1)))
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"]))
    w = rng.standard_normal((case["c_out"], case["c_in"] // case["groups"]) + case["kernel"])
    kw = dict(stride=case["stride"], padding=case["padding"], groups=case["groups"])
    check_parity(
        lambda *a: F.conv2d(*a, **kw),
        lambda *a: torch.nn.functional.conv2d(*a, **kw),
        [x, w],
        rng,
        device=device,
    )


@pytest.mark.parametrize("device", DEVICES)
@given(case=phase_cases())
def test_conv_transpose2d_over_phases_matches_torch(case, device):
    torch = torch_or_skip()
    sizes = [
        (n - 1) * s - 2 * p + k + op
        for n, s, p, k, op in zip(
            (case["h"], case["w"]),
            case["stride"],
            case["padding"],
            case["kernel"],
            case["output_padding"],
        )
    ]
    assume(min(sizes) >= 1)
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"]))
    w = rng.standard_normal((case["c_in"], case["c_out"] // case["groups"]) + case["kernel"])
    b = rng.standard_normal(case["c_out"])
    kw = dict(
        stride=case["stride"],
        padding=case["padding"],
        groups=case["groups"],
        output_padding=case["output_padding"],
    )
    check_parity(
        lambda *a: F.conv_transpose2d(*a, **kw),
        lambda *a: torch.nn.functional.conv_transpose2d(*a, **kw),
        [x, w, b],
        rng,
        device=device,
    )


@given(case=phase_cases())
def test_space_to_depth_and_its_adjoint_are_adjoint(case):
    win = Windows(case["kernel"], case["stride"], case["padding"], (1, 1))
    out_hw = [max(o // s + 1, 1) for o, s in zip(_conv_out(case), case["stride"])]
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"]))
    phased = phases.space_to_depth(x, win, out_hw)
    y = rng.standard_normal(phased.shape)
    back = phases.space_to_depth_adjoint(y, win, x.shape)
    np.testing.assert_allclose(
        float((phased * y).sum()), float((x * back).sum()), rtol=1e-10, atol=1e-10
    )


@given(case=phase_cases())
def test_numba_shuffles_equal_the_array_path_of_the_gpu(case):
    """Both rearrangements' Numba passes against their ``_xp`` twins (the CuPy path) on NumPy."""
    win = Windows(case["kernel"], case["stride"], case["padding"], (1, 1))
    out_hw = [max(o // s + 1, 1) for o, s in zip(_conv_out(case), case["stride"])]
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"])).astype(np.float32)
    phased = phases.space_to_depth(x, win, out_hw)
    np.testing.assert_array_equal(phased, phases._space_to_depth_xp(x, win, out_hw))
    y = rng.standard_normal(phased.shape).astype(np.float32)
    np.testing.assert_array_equal(
        phases.space_to_depth_adjoint(y, win, x.shape),
        phases._space_to_depth_adjoint_xp(y, win, x.shape),
    )


def test_phase_weight_round_trips_and_places_each_tap(rng):
    win = Windows((4, 6), (2, 3), (1, 1), (1, 1))
    w = rng.standard_normal((3, 2, 4, 6))
    phased = phases.phase_weight(w, win)
    assert phased.shape == (3, 2 * 2 * 3, 2, 2)
    assert (
        phased[1, 1 * 6 + 1 * 3 + 2, 1, 0] == w[1, 1, 2 * 1 + 1, 3 * 0 + 2]
    )  # [o, (c, rh, rw), a, b]
    np.testing.assert_array_equal(phases.phase_weight_adjoint(phased, win, w.shape), w)


def test_kernel_equal_to_stride_is_a_matrix_multiply_without_im2col(monkeypatch, rng):
    """U-Net's 2x2 stride-2 up-convolution: one phase tap, so no column matrix at all."""
    torch = torch_or_skip()

    def no_im2col(*args, **kwargs):
        raise AssertionError("a kernel-equals-stride convolution must not build columns")

    monkeypatch.setattr(_conv_fast, "im2col", no_im2col)
    x, w, b = (
        rng.standard_normal((2, 4, 5, 3)),
        rng.standard_normal((4, 3, 2, 2)),
        rng.standard_normal(3),
    )
    check_parity(
        lambda *a: F.conv_transpose2d(*a, stride=2),
        lambda *a: torch.nn.functional.conv_transpose2d(*a, stride=2),
        [x, w, b],
        rng,
    )


@pytest.mark.parametrize(
    "kernel,stride,dilation",
    [
        ((3, 3), (2, 2), (1, 1)),
        ((4, 4), (2, 2), (2, 2)),
        ((3, 3), (1, 1), (1, 1)),
        ((4, 3), (2, 2), (1, 1)),
    ],
)
def test_phases_are_not_used_where_they_do_not_apply(kernel, stride, dilation):
    assert not phases.applies(Windows(kernel, stride, (0, 0), dilation))
