"""conv2d and conv_transpose2d: PyTorch parity, gradchecks, the adjoint property, workspace
chunking of the fast path (same values, bounded memory) and bad input.
tests/reference/test_conv.py holds the reference against PyTorch and the fast path against
the reference."""

import contextlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision.functional import conv as conv_module
from tests.helpers import check_parity, torch_or_skip


@pytest.fixture(scope="module")
def torch():
    return torch_or_skip()


@contextlib.contextmanager
def workspace_budget(nbytes):
    """Shrink the im2col workspace inside the block, restoring it afterwards."""
    previous = conv_module.get_workspace_budget()
    conv_module.set_workspace_budget(nbytes)
    try:
        yield
    finally:
        conv_module.set_workspace_budget(previous)


def pairs(low, high):
    """(h, w) pairs of ints in [low, high]."""
    return st.tuples(st.integers(low, high), st.integers(low, high))


@st.composite
def conv_cases(
    draw,
    transposed=False,
    kernel=pairs(1, 3),
    stride=pairs(1, 3),
    padding=pairs(0, 2),
    dilation=pairs(1, 2),
    groups=st.integers(1, 3),
):
    """Shapes and hyper-parameters of a small conv whose output is not empty; each geometry
    argument the strategy its value is drawn from."""
    groups = draw(groups)
    case = dict(
        n=draw(st.integers(1, 2)),
        c_in=groups * draw(st.integers(1, 2)),
        c_out=groups * draw(st.integers(1, 2)),
        h=draw(st.integers(1, 7)),
        w=draw(st.integers(1, 7)),
        kernel=draw(kernel),
        stride=draw(stride),
        padding=draw(padding),
        dilation=draw(dilation),
        groups=groups,
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )
    if transposed:
        case["output_padding"] = tuple(
            draw(st.integers(0, max(s, d) - 1)) for s, d in zip(case["stride"], case["dilation"])
        )
        sizes = [
            (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            for n, s, p, d, k, op in zip(
                (case["h"], case["w"]),
                case["stride"],
                case["padding"],
                case["dilation"],
                case["kernel"],
                case["output_padding"],
            )
        ]
    else:
        sizes = [
            n + 2 * p - d * (k - 1)
            for n, p, d, k in zip(
                (case["h"], case["w"]), case["padding"], case["dilation"], case["kernel"]
            )
        ]
    assume(min(sizes) >= 1)
    return case


def conv_arrays(case, transposed=False):
    """([x, weight] or [x, weight, bias] in float64, the generator that drew them) for a case."""
    rng = np.random.default_rng(case["seed"])
    g = case["groups"]
    w_shape = (
        (case["c_in"], case["c_out"] // g) if transposed else (case["c_out"], case["c_in"] // g)
    ) + case["kernel"]
    arrays = [
        rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"])),
        rng.standard_normal(w_shape),
    ]
    if case["bias"]:
        arrays.append(rng.standard_normal(case["c_out"]))
    return arrays, rng


def conv_kwargs(case, transposed=False):
    """The case's keyword arguments of conv2d (or conv_transpose2d)."""
    keys = ("stride", "padding", "dilation", "groups") + (("output_padding",) if transposed else ())
    return {k: case[k] for k in keys}


@pytest.mark.parametrize("kernel,dilation", [((3, 3), 1), ((2, 4), (2, 1)), ((1, 1), 1)])
def test_conv2d_same_and_valid_padding_match_torch(kernel, dilation, rng, torch):
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3) + kernel)
    for padding in ("same", "valid"):
        check_parity(
            lambda a, b: F.conv2d(a, b, padding=padding, dilation=dilation),
            lambda a, b: torch.nn.functional.conv2d(a, b, padding=padding, dilation=dilation),
            [x, w],
            rng,
        )


@given(case=conv_cases())
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)> for every x, y."""
    (x, w, *_), rng = conv_arrays(case)
    kw = conv_kwargs(case)
    y = rng.standard_normal(F.conv2d(mv.Tensor(x), mv.Tensor(w), **kw).shape)
    output_padding = tuple(  # the rows/columns of x that conv2d's floor division left unread
        n + 2 * p - d * (k - 1) - 1 - (o - 1) * s
        for n, p, d, k, o, s in zip(
            x.shape[2:],
            case["padding"],
            case["dilation"],
            case["kernel"],
            y.shape[2:],
            case["stride"],
        )
    )
    assume(
        all(op < max(s, d) for op, s, d in zip(output_padding, case["stride"], case["dilation"]))
    )
    forward = float((F.conv2d(mv.Tensor(x), mv.Tensor(w), **kw).numpy() * y).sum())
    adjoint = F.conv_transpose2d(mv.Tensor(y), mv.Tensor(w), output_padding=output_padding, **kw)
    assert adjoint.shape == x.shape
    np.testing.assert_allclose(forward, float((x * adjoint.numpy()).sum()), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=1, padding=1),
        dict(stride=(2, 1), padding=(0, 1), dilation=(1, 2)),
        dict(stride=1, padding=0, groups=2),
    ],
)
def test_conv2d_gradcheck(kw, rng):
    x = mv.Tensor(rng.standard_normal((2, 2, 5, 4)), requires_grad=True)
    w = mv.Tensor(rng.standard_normal((2, 2 // kw.get("groups", 1), 3, 2)), requires_grad=True)
    b = mv.Tensor(rng.standard_normal(2), requires_grad=True)
    mv.gradcheck(lambda x, w, b: F.conv2d(x, w, b, **kw), [x, w, b])


@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=2, padding=1, output_padding=1),
        dict(stride=(1, 2), padding=(1, 0), dilation=(2, 1), output_padding=(1, 0)),
        dict(stride=2, groups=2),
    ],
)
def test_conv_transpose2d_gradcheck(kw, rng):
    x = mv.Tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)
    w = mv.Tensor(rng.standard_normal((2, 2 // kw.get("groups", 1), 3, 2)), requires_grad=True)
    b = mv.Tensor(
        rng.standard_normal(2 // kw.get("groups", 1) * kw.get("groups", 1)), requires_grad=True
    )
    mv.gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), [x, w, b])


def test_pointwise_conv_is_a_matmul_without_im2col(monkeypatch, rng, torch):
    from minivision.functional import (
        _conv_fast,  # (a fast-path test: a student copy has no such module)
    )

    def no_im2col(*args, **kwargs):
        raise AssertionError("a 1x1 stride-1 convolution must not build columns")

    monkeypatch.setattr(_conv_fast, "im2col", no_im2col)
    with mv.use_reference(False):
        x, w, b = (
            rng.standard_normal((2, 6, 4, 5)),
            rng.standard_normal((4, 3, 1, 1)),
            rng.standard_normal(4),
        )
        check_parity(
            lambda *a: F.conv2d(*a, groups=2),
            lambda *a: torch.nn.functional.conv2d(*a, groups=2),
            [x, w, b],
            rng,
        )
        x, w, b = (
            rng.standard_normal((2, 3, 4, 5)),
            rng.standard_normal((3, 2, 1, 1)),
            rng.standard_normal(6),
        )
        check_parity(
            lambda *a: F.conv_transpose2d(*a, groups=3),
            lambda *a: torch.nn.functional.conv_transpose2d(*a, groups=3),
            [x, w, b],
            rng,
        )


def _conv_forward_backward(x, w, upstream):
    """A 5x5 conv's output and gradients on the fast path."""
    xt, wt = mv.Tensor(x, requires_grad=True), mv.Tensor(w, requires_grad=True)
    with mv.use_reference(False):
        out = F.conv2d(xt, wt, padding=2)
        out.backward(upstream)
    return out.numpy(), xt.grad.numpy(), wt.grad.numpy()


@pytest.mark.parametrize("budget", [40_000, 200_000])
def test_chunked_conv_gives_the_unchunked_result(budget, rng):
    x, w = rng.standard_normal((3, 4, 12, 10)), rng.standard_normal((5, 4, 5, 5))
    upstream = rng.standard_normal((3, 5, 12, 10))
    whole = _conv_forward_backward(x, w, upstream)
    with workspace_budget(
        budget
    ):  # 40 kB: bands of rows of one sample; 200 kB: one sample at a time
        chunked = _conv_forward_backward(x, w, upstream)
    for got, expected in zip(chunked, whole):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_workspace_budget_bounds_the_memory_of_forward_and_backward(rng):
    """A 5x5 conv's full column matrix is 25x its input; with a small budget the peak stays
    near the layer's own arrays (input, output, gradients) plus the budget."""
    x, w = rng.standard_normal((2, 8, 40, 40)), rng.standard_normal((8, 8, 5, 5))
    upstream = rng.standard_normal((2, 8, 40, 40))
    layer_bytes = x.nbytes  # input, output, upstream and input gradient are each this size
    full_columns = 25 * x.nbytes
    threads = mv.get_num_threads()
    mv.set_num_threads(1)  # workers would each hold their share of the batch's columns
    try:
        unchunked = _peak_bytes(lambda: _conv_forward_backward(x, w, upstream))
    finally:
        mv.set_num_threads(threads)
    assert unchunked > full_columns  # the measurement sees the column matrix
    budget = 64 * 2**10
    with workspace_budget(budget):
        chunked = _peak_bytes(lambda: _conv_forward_backward(x, w, upstream))
    # output + input grad + their copies in Tensors/backward: 4 layer arrays; band + columns: 3 budgets
    # (the worker threads share the budget)
    assert chunked < 4 * layer_bytes + 3 * budget < full_columns / 2


def test_set_workspace_budget_rejects_non_positive():
    with pytest.raises(ValueError, match="workspace budget must be a positive"):
        conv_module.set_workspace_budget(0)


BAD_CONV2D = [
    (
        dict(x=(1, 4, 5, 5), w=(2, 3, 3, 3)),
        ValueError,
        "expected input of shape .* to have 3 channels, but got 4",
    ),
    (
        dict(x=(1, 4, 5, 5), w=(3, 2, 3, 3), groups=2),
        ValueError,
        "groups=2 must divide weight dimension 0",
    ),
    (
        dict(x=(1, 3, 2, 2), w=(2, 3, 3, 3)),
        ValueError,
        "kernel size 3x3 .* larger than the padded input 2x2",
    ),
    (
        dict(x=(1, 3, 4, 4), w=(2, 3, 3, 3), dilation=2),
        ValueError,
        "kernel size 5x5 .* larger than the padded input 4x4",
    ),
    (
        dict(x=(1, 1, 3, 5, 5), w=(2, 3, 3, 3)),
        ValueError,
        r"input must have shape \(N, C, H, W\), got \(1, 1, 3, 5, 5\)",
    ),
    (dict(x=(1, 3, 5, 5), w=(2, 3, 3)), ValueError, r"weight must have shape \(N, C, H, W\)"),
    (
        dict(x=(1, 3, 5, 5), w=(2, 3, 3, 3), b=(3,)),
        ValueError,
        r"bias must have shape \(2,\), got \(3,\)",
    ),
    (dict(x=(1, 3, 5, 5), w=(2, 3, 3, 3), stride=0), ValueError, "stride must be >= 1"),
    (
        dict(x=(1, 3, 5, 5), w=(2, 3, 3, 3), padding=1.5),
        TypeError,
        "padding must be an int or a pair of ints, got 1.5",
    ),
    (
        dict(x=(1, 3, 5, 5), w=(2, 3, 3, 3), groups=0),
        ValueError,
        "groups must be a positive int, got 0",
    ),
    (
        dict(x=(1, 3, 5, 5), w=(2, 3, 3, 3), padding="same", stride=2),
        ValueError,
        "padding='same' needs stride 1",
    ),
]


@pytest.mark.parametrize("spec,error,message", BAD_CONV2D)
def test_conv2d_bad_input(spec, error, message):
    spec = dict(spec)
    x, w, b = np.zeros(spec.pop("x")), np.zeros(spec.pop("w")), spec.pop("b", None)
    with pytest.raises(error, match=message):
        F.conv2d(mv.Tensor(x), mv.Tensor(w), None if b is None else mv.Tensor(np.zeros(b)), **spec)


def test_conv2d_rejects_mixed_dtypes():
    with pytest.raises(TypeError, match="weight has dtype float32 but input has dtype float64"):
        F.conv2d(mv.Tensor(np.zeros((1, 1, 3, 3))), mv.Tensor(np.zeros((1, 1, 3, 3), np.float32)))


BAD_CONV_TRANSPOSE2D = [
    (
        dict(x=(1, 4, 5, 5), w=(3, 2, 3, 3)),
        ValueError,
        "expected input of shape .* to have 3 channels, but got 4",
    ),
    (
        dict(x=(1, 3, 5, 5), w=(3, 2, 3, 3), groups=2),
        ValueError,
        "groups=2 must divide weight dimension 0",
    ),
    (
        dict(x=(1, 3, 5, 5), w=(3, 2, 3, 3), output_padding=1),
        ValueError,
        "output_padding must be smaller than either stride or dilation",
    ),
    (dict(x=(1, 3, 1, 1), w=(3, 2, 1, 1), padding=1), ValueError, "the output would be -1x-1"),
    (dict(x=(1, 3, 5, 5), w=(3, 2, 3, 3), b=(3,)), ValueError, r"bias must have shape \(2,\)"),
]


@pytest.mark.parametrize("spec,error,message", BAD_CONV_TRANSPOSE2D)
def test_conv_transpose2d_bad_input(spec, error, message):
    spec = dict(spec)
    x, w, b = np.zeros(spec.pop("x")), np.zeros(spec.pop("w")), spec.pop("b", None)
    with pytest.raises(error, match=message):
        F.conv_transpose2d(
            mv.Tensor(x), mv.Tensor(w), None if b is None else mv.Tensor(np.zeros(b)), **spec
        )


def test_conv_ops_take_an_unbatched_image_like_torch(rng, torch):
    x, w, b = (
        rng.standard_normal((3, 6, 5)),
        rng.standard_normal((3, 3, 3, 2)),
        rng.standard_normal(3),
    )
    check_parity(
        lambda *a: F.conv2d(*a, padding=1),
        lambda *a: torch.nn.functional.conv2d(*a, padding=1),
        [x, w, b],
        rng,
    )
    check_parity(
        lambda *a: F.conv_transpose2d(*a, stride=2),
        lambda *a: torch.nn.functional.conv_transpose2d(*a, stride=2),
        [x, w, b],
        rng,
    )
