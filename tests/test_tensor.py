"""The engine: graph building, backward order, accumulation, no_grad, detach, errors."""

import numpy as np
import pytest

import minivision as mv


def test_chain_of_ten_thousand_ops_backpropagates_without_recursion():
    x = mv.tensor(1.0, dtype="float64", requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001**10_000, rel=1e-9)


def test_node_used_twice_accumulates_both_paths():
    x = mv.tensor([2.0, 3.0], dtype="float64", requires_grad=True)
    h = x * x  # used by two consumers below
    y = (h * 3.0 + h.exp()).sum()
    y.backward()
    # d/dx [3 x^2 + exp(x^2)] = 6x + 2x exp(x^2)
    expected = 6 * np.array([2.0, 3.0]) + 2 * np.array([2.0, 3.0]) * np.exp(np.array([4.0, 9.0]))
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_diamond_graph_visits_shared_parent_once():
    x = mv.tensor(3.0, dtype="float64", requires_grad=True)
    a = x * 2.0
    b = a + a
    c = b * a  # c = 2a * a = 8 x^2 -> dc/dx = 16 x
    c.backward()
    assert x.grad.item() == pytest.approx(48.0)


def test_grad_accumulates_over_two_backward_calls():
    x = mv.tensor([1.0], requires_grad=True)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    assert x.grad.numpy().tolist() == [5.0]


def test_requires_grad_propagates_only_from_marked_inputs():
    a = mv.tensor([1.0, 2.0], requires_grad=True)
    b = mv.tensor([3.0, 4.0])
    assert (a + b).requires_grad
    assert not (b * 2.0).requires_grad
    assert not (a + b).is_leaf and a.is_leaf


def test_no_grad_records_nothing_and_restores_state():
    a = mv.tensor([1.0], requires_grad=True)
    with mv.no_grad():
        b = a * 2.0
        assert not mv.is_grad_enabled()
    assert mv.is_grad_enabled()
    assert not b.requires_grad and b.is_leaf


def test_no_grad_works_as_decorator():
    @mv.no_grad()
    def double(t):
        return t * 2.0

    assert not double(mv.tensor([1.0], requires_grad=True)).requires_grad


def test_detach_cuts_the_graph_and_shares_memory():
    a = mv.tensor([1.0, 2.0], requires_grad=True)
    d = (a * 2.0).detach()
    assert not d.requires_grad and d.is_leaf
    b = a * 1.0
    assert np.shares_memory(b.detach().data, b.data)


def test_retain_grad_keeps_intermediate_gradient():
    a = mv.tensor([1.0, 2.0], requires_grad=True)
    h = a * 3.0
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * np.array([3.0, 6.0]))


def test_backward_on_non_scalar_needs_a_gradient():
    a = mv.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"one-element tensor, got shape \(2,\)"):
        (a * 2.0).backward()


def test_backward_gradient_of_wrong_shape_is_rejected():
    a = mv.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"grad has shape \(3,\), expected \(2,\)"):
        (a * 2.0).backward(np.ones(3, dtype=np.float32))


def test_backward_without_graph_is_explained():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mv.tensor([1.0]).sum().backward()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(
        TypeError, match="only floating-point tensors can require gradients, got dtype int64"
    ):
        mv.tensor([1, 2], requires_grad=True)


def test_tensor_factory_dtypes_follow_torch():
    assert mv.tensor([1.0, 2.0]).dtype == np.float32
    assert mv.tensor([1, 2]).dtype == np.int64
    assert mv.tensor([True]).dtype == np.bool_
    assert mv.tensor(np.zeros(2, dtype=np.float64)).dtype == np.float64
    assert mv.Tensor(np.zeros(2, dtype=np.float16)).dtype == np.float16


@pytest.mark.parametrize("dtype", [None, np.float32])
def test_tensor_copies_its_data_as_torch_tensor_does(device, dtype):
    array = np.arange(3.0)
    on_device = mv.tensor(array, device=device).data
    for data in (array, on_device, mv.tensor(on_device)):
        mv.tensor(data, dtype=dtype, device=device).data[...] = (
            7  # as an optimizer's in-place step writes
        )
    assert array.tolist() == [0, 1, 2]
    assert mv.tensor(on_device).numpy().tolist() == [0, 1, 2]


def test_tensor_attributes_and_conversions():
    t = mv.tensor([[1.0, 2.0, 3.0]])
    assert t.shape == (1, 3) and t.ndim == 2 and t.device == "cpu" and len(t) == 1
    assert isinstance(t.numpy(), np.ndarray)
    assert t.sum().item() == 6.0
    assert t.tolist() == [[1.0, 2.0, 3.0]]
    assert t.to("cpu") is t
    assert "requires_grad=True" in repr(mv.tensor([1.0], requires_grad=True))


def test_scalar_operands_keep_float32():
    t = mv.tensor([1.0, 2.0])
    for result in (t * 2.5, 2.5 * t, t + 1, 1 - t, t / 3.0, 3.0 / t, t**2.0, 2.0**t):
        assert result.dtype == np.float32


def test_numpy_array_on_the_left_dispatches_to_tensor():
    t = mv.tensor([1.0, 2.0], requires_grad=True)
    out = np.array([3.0, 4.0], dtype=np.float32) * t
    assert isinstance(out, mv.Tensor)
    out.sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), [3.0, 4.0])


def test_comparisons_are_elementwise_and_tensors_stay_hashable():
    t = mv.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal((t > 1.5).numpy(), [False, True, True])
    np.testing.assert_array_equal((t == t).numpy(), [True, True, True])
    assert len({t, t}) == 1


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'cuda'\), got 'tpu'"):
        mv.tensor([1.0], device="tpu")


class _MaxWithIndex(mv.Function):
    """The row maxima and where they are: two outputs, the second not differentiable."""

    def forward(self, x):
        self.index, self.shape = x.argmax(axis=1), x.shape
        return x.max(axis=1), self.index

    def backward(self, grad):
        out = np.zeros(self.shape, dtype=grad.dtype)
        out[np.arange(self.shape[0]), self.index] = grad
        return out


def test_a_function_with_several_outputs_differentiates_the_first_and_returns_the_rest_as_constants():
    x = mv.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]], requires_grad=True)
    values, index = _MaxWithIndex.apply(x)
    assert values.requires_grad and not index.requires_grad and index.is_leaf
    np.testing.assert_array_equal(index.numpy(), [1, 0])
    (values * mv.tensor([2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 2, 0], [3, 0, 0]])
    with mv.no_grad():
        values, index = _MaxWithIndex.apply(x)
    assert not values.requires_grad and index.numpy().tolist() == [1, 0]
