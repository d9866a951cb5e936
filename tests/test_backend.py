"""Backend dispatch: NumPy by default, CuPy optional with clear errors."""

import builtins
import sys

import numpy as np
import pytest

from minivision import backend


def test_numpy_arrays_dispatch_to_numpy():
    assert backend.get_array_module(np.zeros(2), None, 3.0) is np
    assert backend.device_of(np.zeros(2)) == "cpu"


def test_device_names_are_normalised():
    assert backend.check_device("cuda:0") == "cuda"
    assert backend.check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be one of"):
        backend.check_device("gpu")


def test_missing_cupy_gives_an_install_hint(monkeypatch):
    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    monkeypatch.setattr(backend.importlib, "import_module", lambda name: no_cupy(name))
    with pytest.raises(
        RuntimeError, match=r"device 'cuda' needs CuPy, which is not installed.*minivision\[gpu\]"
    ):
        backend.xp_for_device("cuda")
    assert backend.cuda_available() is False


class _FakeCupyArray:
    """Stands in for cupy.ndarray so the mixed-device check runs without a GPU."""

    shape = (2,)
    dtype = np.dtype("float32")


def test_mixing_devices_names_both(monkeypatch):
    fake_cupy = type(sys)("cupy")
    fake_cupy.ndarray = _FakeCupyArray
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    assert backend.device_of(_FakeCupyArray()) == "cuda"
    with pytest.raises(ValueError, match="different devices: got both 'cpu' and 'cuda'"):
        backend.get_array_module(np.zeros(2), _FakeCupyArray())


def test_mixing_devices_in_an_op_is_reported_before_computing(monkeypatch):
    import minivision as mv

    fake_cupy = type(sys)("cupy")
    fake_cupy.ndarray = _FakeCupyArray
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    with pytest.raises(ValueError, match="'cpu' and 'cuda'"):
        mv.functional.math._Add.apply(mv.tensor([1.0, 2.0]), mv.Tensor(_FakeCupyArray()))


def test_manual_seed_makes_draws_repeatable():
    import minivision as mv

    mv.manual_seed(7)
    a = mv.randn(3).numpy()
    mv.manual_seed(7)
    np.testing.assert_array_equal(a, mv.randn(3).numpy())


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("cupy") is not None, reason="CuPy is installed here"
)
def test_moving_to_cuda_without_cupy_is_explained():
    import minivision as mv

    with pytest.raises(RuntimeError, match="device 'cuda' needs CuPy"):
        mv.tensor([1.0]).to("cuda")
    with pytest.raises(RuntimeError, match="device 'cuda' needs CuPy"):
        mv.nn.Linear(2, 2).to("cuda")


def test_keyword_arrays_on_another_device_are_reported(monkeypatch):
    """Arrays an op takes by keyword (running statistics, class weights) are checked too."""
    import minivision as mv

    fake_cupy = type(sys)("cupy")
    fake_cupy.ndarray = _FakeCupyArray
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    on_gpu = mv.Tensor(_FakeCupyArray())
    with pytest.raises(ValueError, match="'cpu' and 'cuda'"):
        mv.functional.batch_norm(mv.randn(4, 2, 3, 3), on_gpu, mv.ones(2), training=True)
    with pytest.raises(ValueError, match="'cpu' and 'cuda'"):
        mv.functional.nll_loss(mv.randn(3, 2), mv.tensor([0, 1, 1]), weight=on_gpu)
