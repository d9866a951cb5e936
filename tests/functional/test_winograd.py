"""Winograd's F(2x2, 3x3) path for 3x3 stride-1 convolutions: the same values and gradients
as im2col and PyTorch, float32 error no worse than im2col's, and used only where it applies."""

import contextlib

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision.functional import _winograd as winograd
from minivision.functional import conv as conv_module
from minivision.functional._geometry import Windows
from tests.helpers import check_parity, torch_or_skip


@pytest.fixture(autouse=True, scope="module")
def fast_path():
    """These tests are about a fast path: it runs even under MINIVISION_REFERENCE=1."""
    with mv.use_reference(False):
        yield


@contextlib.contextmanager
def winograd_enabled(enabled):
    previous = winograd._enabled
    conv_module.set_winograd_enabled(enabled)
    try:
        yield
    finally:
        conv_module.set_winograd_enabled(previous)


def _forward_backward(x, w, b, padding, upstream):
    xt, wt, bt = (mv.Tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(xt, wt, bt, padding=padding)
    out.backward(upstream)
    return out.numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@st.composite
def winograd_cases(draw):
    """3x3 stride-1 convs with odd and even sizes (half tiles at the edges) and padding 0-2."""
    case = dict(
        n=draw(st.integers(1, 3)),
        c_in=draw(st.integers(1, 4)),
        c_out=draw(st.integers(1, 4)),
        h=draw(st.integers(1, 9)),
        w=draw(st.integers(1, 9)),
        padding=(draw(st.integers(0, 2)), draw(st.integers(0, 2))),
        seed=draw(st.integers(0, 2**16)),
    )
    assume(case["h"] + 2 * case["padding"][0] >= 3 and case["w"] + 2 * case["padding"][1] >= 3)
    return case


def _case_arrays(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"]))
    w, b = (
        rng.standard_normal((case["c_out"], case["c_in"], 3, 3)),
        rng.standard_normal(case["c_out"]),
    )
    out_hw = tuple(s + 2 * p - 2 for s, p in zip((case["h"], case["w"]), case["padding"]))
    return x, w, b, rng.standard_normal((case["n"], case["c_out"]) + out_hw), rng


@given(case=winograd_cases())
def test_winograd_matches_im2col_in_value_and_every_gradient(case):
    x, w, b, upstream, _ = _case_arrays(case)
    assert winograd.applies(x, case["c_out"], 1, Windows((3, 3), (1, 1), case["padding"], (1, 1)))
    with winograd_enabled(True):
        fast = _forward_backward(x, w, b, case["padding"], upstream)
    with winograd_enabled(False):
        reference = _forward_backward(x, w, b, case["padding"], upstream)
    for name, got, expected in zip(
        ("output", "input grad", "weight grad", "bias grad"), fast, reference
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10, err_msg=name)


@given(case=winograd_cases())
def test_winograd_conv2d_matches_torch(case):
    torch = torch_or_skip()
    x, w, b, _, rng = _case_arrays(case)
    pad = case["padding"]
    check_parity(
        lambda *a: F.conv2d(*a, padding=pad),
        lambda *a: torch.nn.functional.conv2d(*a, padding=pad),
        [x, w, b],
        rng,
    )


@pytest.mark.parametrize("padding", [0, 1, 2, (2, 0)])
def test_winograd_conv2d_gradcheck(padding, rng):
    x = mv.Tensor(rng.standard_normal((2, 3, 5, 6)), requires_grad=True)
    w = mv.Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    b = mv.Tensor(rng.standard_normal(2), requires_grad=True)
    pair = padding if isinstance(padding, tuple) else (padding, padding)
    assert winograd.applies(x.data, 2, 1, Windows((3, 3), (1, 1), pair, (1, 1)))
    mv.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=padding), [x, w, b])


@pytest.mark.parametrize("channels", [3, 64, 256])
def test_winograd_float32_error_is_no_worse_than_im2col(channels, rng):
    """Winograd adds and subtracts inputs before multiplying; in float32 its error against a
    float64 result stays within a small factor of the direct method's (Lavin & Gray's F(2x2, 3x3)
    is the stable member of the family)."""
    x = rng.standard_normal((2, channels, 13, 11))
    w = rng.standard_normal((8, channels, 3, 3)) / np.sqrt(9 * channels)
    upstream = rng.standard_normal((2, 8, 13, 11))
    b = np.zeros(8)
    exact = _forward_backward(x, w, b, 1, upstream)
    errors = {}
    for enabled in (True, False):
        with winograd_enabled(enabled):
            got = _forward_backward(
                *(a.astype(np.float32) for a in (x, w, b)), 1, upstream.astype(np.float32)
            )
        errors[enabled] = [
            np.abs(g - e).max() / np.abs(e).max() for g, e in zip(got[:3], exact[:3])
        ]
    for name, fast, direct in zip(
        ("output", "input grad", "weight grad"), errors[True], errors[False]
    ):
        assert fast <= 4 * direct + 1e-7, (
            f"{name}: Winograd error {fast:.2e} vs im2col {direct:.2e}"
        )


def test_batch_split_into_pieces_gives_the_whole_batch_result(monkeypatch, rng):
    x, w, b = (
        rng.standard_normal((5, 3, 7, 6)),
        rng.standard_normal((4, 3, 3, 3)),
        rng.standard_normal(4),
    )
    upstream = rng.standard_normal((5, 4, 7, 6))
    whole = _forward_backward(x, w, b, 1, upstream)
    monkeypatch.setattr(winograd, "PIECE_BYTES", 1)
    monkeypatch.setattr(
        winograd, "MIN_PIECE_TILES", 1
    )  # one sample per piece, buffers reused 5 times
    pieces = _forward_backward(x, w, b, 1, upstream)
    for got, expected in zip(pieces, whole):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation,groups,dtype",
    [
        ((3, 3), (2, 2), (1, 1), (1, 1), 1, np.float64),  # strided
        ((3, 3), (1, 1), (1, 1), (2, 2), 1, np.float64),  # dilated
        ((3, 3), (1, 1), (1, 1), (1, 1), 2, np.float64),  # grouped
        ((3, 3), (1, 1), (3, 1), (1, 1), 1, np.float64),  # the adjoint's padding would be negative
        ((5, 5), (1, 1), (1, 1), (1, 1), 1, np.float64),
        ((3, 3), (1, 1), (1, 1), (1, 1), 1, np.float16),
    ],
)
def test_winograd_is_not_used_where_it_does_not_apply(
    kernel, stride, padding, dilation, groups, dtype
):
    x = np.zeros((1, 4, 8, 8), dtype=dtype)
    assert not winograd.applies(x, 4, groups, Windows(kernel, stride, padding, dilation))


def test_winograd_is_not_used_when_one_sample_exceeds_the_workspace_budget():
    x = np.zeros((1, 8, 32, 32))
    win = Windows((3, 3), (1, 1), (1, 1), (1, 1))
    previous = conv_module.get_workspace_budget()
    try:
        conv_module.set_workspace_budget(
            16 * (8 + 4) * 16 * 16 * 8 - 1
        )  # one byte short of one sample's tiles
        assert not winograd.applies(x, 4, 1, win)
    finally:
        conv_module.set_workspace_budget(previous)
    assert winograd.applies(x, 4, 1, win)


def test_winograd_memory_stays_within_the_workspace_budget(monkeypatch, rng):
    """Pieces of the batch keep the transformed tiles (4x the input, 4x the output) under the
    budget: the peak is the layer's own arrays plus about one budget, not the whole batch's tiles."""
    import tracemalloc

    x, w, b = rng.standard_normal((8, 8, 24, 24)), rng.standard_normal((8, 8, 3, 3)), np.zeros(8)
    upstream = rng.standard_normal((8, 8, 24, 24))
    whole_batch_tiles = 16 * (8 + 8) * 8 * 12 * 12 * 8  # V and products for all 8 samples: 2.4 MB
    budget = whole_batch_tiles // 4
    previous = conv_module.get_workspace_budget()
    conv_module.set_workspace_budget(budget)
    monkeypatch.setattr(winograd, "PIECE_BYTES", budget)
    try:
        assert winograd.applies(x, 8, 1, Windows((3, 3), (1, 1), (1, 1), (1, 1)))
        _forward_backward(
            x, w, b, 1, upstream
        )  # loads the compiled kernels outside the measurement
        tracemalloc.start()
        _forward_backward(x, w, b, 1, upstream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        conv_module.set_workspace_budget(previous)
    # output, input gradient and their copies in Tensors/backward: 4 arrays of x's size; pieces: 2 budgets
    assert peak < 4 * x.nbytes + 2 * budget < whole_batch_tiles + 4 * x.nbytes
