"""The reference convolution (``minivision.reference.conv``): PyTorch parity, float64
gradchecks, the adjoint properties and hand-checked columns; then the fast path against it.

The graded tests of the ``conv`` part run the reference, directly or through the ops under
``mv.use_reference(True)``, so a student copy without the part fails each of them. The fast
path's modules are imported inside the tests that compare it (a student copy has none)."""

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision.functional._geometry import Windows
from minivision.reference import conv as reference
from tests.functional.test_conv import conv_arrays, conv_cases, conv_kwargs, pairs, workspace_budget
from tests.helpers import DEVICES, check_parity, torch_or_skip


@pytest.fixture(scope="module")
def torch():
    return torch_or_skip()


def _leaves(arrays) -> list:
    """Tensors that want a gradient, one per array."""
    return [mv.Tensor(a, requires_grad=True) for a in arrays]


def _geometry(case) -> tuple:
    """(kernel, stride, padding, dilation) of a case, as the reference takes them."""
    return case["kernel"], case["stride"], case["padding"], case["dilation"]


# ----------------------------------------------------------------- the reference (graded)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["reference", "fast"])
@given(case=conv_cases())
def test_conv2d_matches_torch(case, path, device, torch):
    arrays, rng = conv_arrays(case)
    kw = conv_kwargs(case)
    with mv.use_reference(path == "reference"):
        check_parity(
            lambda *a: F.conv2d(*a, **kw),
            lambda *a: torch.nn.functional.conv2d(*a, **kw),
            arrays,
            rng,
            device=device,
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["reference", "fast"])
@given(case=conv_cases(transposed=True))
def test_conv_transpose2d_matches_torch(case, path, device, torch):
    arrays, rng = conv_arrays(case, transposed=True)
    kw = conv_kwargs(case, transposed=True)
    with mv.use_reference(path == "reference"):
        check_parity(
            lambda *a: F.conv_transpose2d(*a, **kw),
            lambda *a: torch.nn.functional.conv_transpose2d(*a, **kw),
            arrays,
            rng,
            device=device,
        )


@settings(max_examples=10)
@given(case=conv_cases())
def test_reference_conv2d_gradcheck(case):
    arrays, _ = conv_arrays(case)
    kw = conv_kwargs(case)
    with mv.use_reference(True):
        mv.gradcheck(lambda *a: F.conv2d(*a, **kw), _leaves(arrays))


@settings(max_examples=10)
@given(case=conv_cases(transposed=True))
def test_reference_conv_transpose2d_gradcheck(case):
    arrays, _ = conv_arrays(case, transposed=True)
    kw = conv_kwargs(case, transposed=True)
    with mv.use_reference(True):
        mv.gradcheck(lambda *a: F.conv_transpose2d(*a, **kw), _leaves(arrays))


@given(case=conv_cases())
def test_im2col_and_col2im_are_adjoint(case):
    """<im2col(x), c> == <x, col2im(c)> for every x and column matrix c."""
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"]))
    cols = reference.im2col(x, *_geometry(case))
    out_h, out_w = reference.output_hw(x.shape[2:], *_geometry(case))
    kh, kw = case["kernel"]
    assert cols.shape == (case["c_in"] * kh * kw, case["n"] * out_h * out_w)
    c = rng.standard_normal(cols.shape)
    back = reference.col2im(c, x.shape, *_geometry(case))
    assert back.shape == x.shape
    np.testing.assert_allclose(
        float((cols * c).sum()), float((x * back).sum()), rtol=1e-10, atol=1e-10
    )


@given(case=conv_cases(transposed=True))
def test_reference_conv_transpose2d_is_the_adjoint_of_conv2d(case):
    """<conv2d(y, w), x> == <y, conv_transpose2d(x, w)>, with the transposed weight read as
    conv2d's; conv2d's windows past x's size (an output_padding of a whole stride, which a
    dilation above the stride allows, adds some) are dropped."""
    (x, w, *_), rng = conv_arrays(case, transposed=True)
    geometry = {key: case[key] for key in ("stride", "padding", "dilation", "groups")}
    out = reference.conv_transpose2d(x, w, None, output_padding=case["output_padding"], **geometry)
    y = rng.standard_normal(out.shape)
    forward = reference.conv2d(y, w, None, **geometry)[:, :, : case["h"], : case["w"]]
    assert forward.shape == x.shape
    np.testing.assert_allclose(
        float((forward * x).sum()), float((y * out).sum()), rtol=1e-10, atol=1e-10
    )


def test_im2col_columns_by_hand():
    """A 3x3 image 0..8: a 2x2 kernel's four windows, then with padding 1 and stride 2 (the
    padded image has a ring of zeros), then dilated to the four corners."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(
        reference.im2col(x, (2, 2), (1, 1), (0, 0), (1, 1)),
        [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]],
    )
    np.testing.assert_array_equal(
        reference.im2col(x, (2, 2), (2, 2), (1, 1), (1, 1)),
        [[0, 0, 0, 4], [0, 0, 3, 5], [0, 1, 0, 7], [0, 2, 6, 8]],
    )
    np.testing.assert_array_equal(
        reference.im2col(x, (2, 2), (1, 1), (0, 0), (2, 2)), [[0], [2], [6], [8]]
    )


def test_col2im_adds_where_windows_overlap():
    """col2im of all ones counts the windows that read each pixel: the 2x2 windows of a 3x3
    image read its centre four times; with padding 1 and stride 2 every pixel once."""
    ones, shape = np.ones((4, 4)), (1, 1, 3, 3)
    np.testing.assert_array_equal(
        reference.col2im(ones, shape, (2, 2), (1, 1), (0, 0), (1, 1)),
        [[[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]],
    )
    np.testing.assert_array_equal(
        reference.col2im(ones, shape, (2, 2), (2, 2), (1, 1), (1, 1)), np.ones(shape)
    )


@pytest.mark.parametrize(
    "stride, expected",
    [
        (1, [[1, 3, 2], [4, 10, 6], [3, 7, 4]]),
        (2, [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]),
    ],
    ids=["overlapping", "side_by_side"],
)
def test_transposed_convolution_stamps_the_kernel_by_hand(stride, expected):
    """The lecture's picture: each input value stamps the (all ones) 2x2 kernel into the output."""
    x = mv.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=np.float64)
    w = mv.tensor(np.ones((1, 1, 2, 2)))
    with mv.use_reference(True):
        out = F.conv_transpose2d(x, w, stride=stride)
    np.testing.assert_array_equal(out.numpy()[0, 0], expected)


def test_float16_runs_the_reference_on_every_setting(rng):
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    expected = reference.conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    for switch in (False, True):
        with mv.use_reference(switch):
            got = F.conv2d(mv.Tensor(x), mv.Tensor(w), padding=1).numpy()
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------- the fast path against the reference
ROUTES = ("im2col", "winograd", "phases", "pointwise")


@st.composite
def fast_path_cases(draw, transposed=False):
    """A case shaped for one of the fast path's routes, and a workspace budget: the default,
    or one byte, which cuts every column matrix to one output row of one sample (and so
    turns Winograd off)."""
    route = draw(st.sampled_from(ROUTES))
    if route == "winograd":
        geometry = dict(
            kernel=st.just((3, 3)),
            stride=st.just((1, 1)),
            dilation=st.just((1, 1)),
            groups=st.just(1),
        )
    elif route == "phases":  # a kernel of whole strides (FCN's 4x4/2, U-Net's 2x2/2)
        stride = draw(st.sampled_from([(2, 2), (2, 3), (3, 1)]))
        taps = draw(pairs(1, 2))
        kernel = tuple(t * s for t, s in zip(taps, stride))
        geometry = dict(
            kernel=st.just(kernel),
            stride=st.just(stride),
            dilation=st.just((1, 1)),
            padding=st.tuples(*(st.integers(0, k - 1) for k in kernel)),
        )
    elif route == "pointwise":
        geometry = dict(kernel=st.just((1, 1)), stride=st.just((1, 1)), padding=st.just((0, 0)))
    else:
        geometry = {}
    case = draw(conv_cases(transposed, **geometry))
    return dict(case, route=route, budget=draw(st.sampled_from([None, 1])))


def _assert_the_route_applies(case, x):
    """The fast path takes the route the case was drawn for (a pointwise case's is plain)."""
    from minivision.functional import _space_to_depth as phases
    from minivision.functional import _winograd as winograd

    win = Windows(*_geometry(case))
    if case["route"] == "winograd" and case["budget"] is None:
        assert winograd.applies(x, case["c_out"], 1, win)
    elif case["route"] == "phases":
        assert phases.applies(win)


def _outputs_and_gradients(fn, arrays, upstream_seed):
    """fn's output and every input's gradient under one random upstream gradient."""
    inputs = _leaves(arrays)
    out = fn(*inputs)
    out.backward(np.random.default_rng(upstream_seed).standard_normal(out.shape))
    return [out.numpy()] + [t.grad.numpy() for t in inputs]


def _fast_and_reference(fn, case, arrays):
    """(fast path results, reference results) of ``_outputs_and_gradients``, the fast path
    within the case's workspace budget."""
    with mv.use_reference(True):
        expected = _outputs_and_gradients(fn, arrays, case["seed"] + 1)
    budget = workspace_budget(case["budget"]) if case["budget"] else contextlib.nullcontext()
    with mv.use_reference(False), budget:
        return _outputs_and_gradients(fn, arrays, case["seed"] + 1), expected


def _assert_equal_up_to_rounding(fast, expected):
    """Float64 results that sum the same products in another order: equal to ~1e-12 of their
    scale."""
    names = ["output", "input gradient", "weight gradient", "bias gradient"]
    for what, got, want in zip(names, fast, expected):
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@given(case=fast_path_cases())
def test_fast_conv2d_equals_the_reference(case):
    arrays, _ = conv_arrays(case)
    _assert_the_route_applies(case, arrays[0])
    kw = conv_kwargs(case)
    results = _fast_and_reference(lambda *a: F.conv2d(*a, **kw), case, arrays)
    _assert_equal_up_to_rounding(*results)


@given(case=fast_path_cases(transposed=True))
def test_fast_conv_transpose2d_equals_the_reference(case):
    arrays, _ = conv_arrays(case, transposed=True)
    _assert_the_route_applies(case, arrays[0])
    kw = conv_kwargs(case, transposed=True)
    results = _fast_and_reference(lambda *a: F.conv_transpose2d(*a, **kw), case, arrays)
    _assert_equal_up_to_rounding(*results)
