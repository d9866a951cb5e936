"""Module registration, modes, state_dict round trips, save/load and their errors."""

import os

import numpy as np
import pytest

import minivision as mv
from minivision import nn
from tests.helpers import assert_close, torch_or_skip


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.body(x))


def test_parameters_are_registered_in_order():
    names = [n for n, _ in TwoLayer().named_parameters()]
    assert names == [
        "body.0.weight",
        "body.0.bias",
        "body.1.weight",
        "body.1.bias",
        "head.weight",
        "head.bias",
    ]


def test_state_dict_holds_parameters_and_buffers():
    keys = list(TwoLayer().state_dict())
    assert "body.1.running_mean" in keys and "body.1.running_var" in keys and len(keys) == 8


def test_train_and_eval_reach_every_submodule():
    model = TwoLayer().eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_eval_mode_disables_dropout_and_uses_running_stats():
    model = TwoLayer().eval()
    x = mv.randn(5, 4)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())


def test_linear_init_and_shapes_follow_torch():
    layer = nn.Linear(50, 7)
    assert layer.weight.shape == (7, 50) and layer.bias.shape == (7,)
    bound = 1 / np.sqrt(50)
    assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.bias.numpy()).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.8 * bound  # drawn over the whole range


def test_module_forward_matches_torch_module(rng):
    torch = torch_or_skip()
    ours = nn.Sequential(nn.Linear(3, 5), nn.LeakyReLU(0.1), nn.Linear(5, 2))
    theirs = torch.nn.Sequential(
        torch.nn.Linear(3, 5), torch.nn.LeakyReLU(0.1), torch.nn.Linear(5, 2)
    )
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert_close(ours(mv.tensor(x)), theirs(torch.tensor(x)), rtol=1e-5, atol=1e-6)


def test_batchnorm2d_module_matches_torch_in_train_and_eval(rng):
    torch = torch_or_skip()
    ours, theirs = nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
        assert_close(ours(mv.tensor(x)), theirs(torch.tensor(x)), rtol=1e-5, atol=1e-5)
    assert_close(ours.running_var, theirs.running_var, rtol=1e-5, what="running_var")
    ours.eval(), theirs.eval()
    assert_close(ours(mv.tensor(x)), theirs(torch.tensor(x)), rtol=1e-5, atol=1e-5)


def test_batchnorm2d_rejects_wrong_rank_and_channels():
    with pytest.raises(
        ValueError,
        match=r"BatchNorm2d\(3\) expects input with 4 dims with 3 channels, got shape \(2, 3\)",
    ):
        nn.BatchNorm2d(3)(mv.zeros(2, 3))


def test_flatten_identity_sequential_indexing():
    model = nn.Sequential(nn.Flatten(), nn.Identity(), nn.Linear(6, 2))
    assert model(mv.zeros(4, 2, 3)).shape == (4, 2)
    assert isinstance(model[2], nn.Linear) and len(model[1:]) == 2
    with pytest.raises(TypeError, match="Sequential takes Modules, got int at position 0"):
        nn.Sequential(3)


def test_save_load_round_trip(tmp_path):
    model = TwoLayer()
    model(mv.randn(6, 4))  # move the running statistics away from their initial values
    path = tmp_path / "weights.npz"
    mv.save(model.state_dict(), path)
    other = TwoLayer()
    other.load_state_dict(mv.load(path))
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    assert [f for f in os.listdir(tmp_path)] == ["weights.npz"]  # no temp file left behind


def test_load_state_dict_names_every_problem():
    state = dict(TwoLayer().state_dict())
    state.pop("head.bias")
    state["extra.weight"] = mv.zeros(1)
    state["head.weight"] = mv.zeros(3, 8)
    with pytest.raises(ValueError) as info:
        TwoLayer().load_state_dict(state)
    message = str(info.value)
    assert "shape mismatch for head.weight: checkpoint (3, 8), model (2, 8)" in message
    assert "missing keys: head.bias" in message and "unexpected keys: extra.weight" in message


def test_load_state_dict_leaves_model_untouched_on_error():
    model = TwoLayer()
    before = model.head.weight.numpy().copy()
    state = {k: mv.zeros(*v.shape) for k, v in model.state_dict().items()}
    state.pop("head.bias")
    with pytest.raises(ValueError):
        model.load_state_dict(state)
    np.testing.assert_array_equal(model.head.weight.numpy(), before)


def test_non_strict_load_reports_missing_and_unexpected():
    state = dict(TwoLayer().state_dict())
    state.pop("head.bias")
    state["extra"] = mv.zeros(1)
    missing, unexpected = TwoLayer().load_state_dict(state, strict=False)
    assert missing == ["head.bias"] and unexpected == ["extra"]


def test_load_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="is not a readable minivision .npz file"):
        mv.load(path)
    with pytest.raises(FileNotFoundError, match="no file at"):
        mv.load(tmp_path / "absent.npz")


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="is not a readable minivision .npz file"):
        mv.load(path)


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "weights.npz"
    mv.save({"w": mv.ones(3)}, path)
    with pytest.raises(TypeError, match="not numeric"):
        mv.save({"w": mv.zeros(3), "bad": np.array([object()], dtype=object)}, path)
    np.testing.assert_array_equal(mv.load(path)["w"].numpy(), [1.0, 1.0, 1.0])
    assert os.listdir(tmp_path) == ["weights.npz"]


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "weights.npz"
    mv.save({"w": mv.ones(3)}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        mv.save({"w": mv.zeros(3)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(mv.load(path)["w"].numpy(), [1.0, 1.0, 1.0])
    assert os.listdir(tmp_path) == ["weights.npz"]


def test_module_without_super_init_is_explained():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(1, 1)

    with pytest.raises(RuntimeError, match=r"must call super\(\).__init__\(\)"):
        Broken()


def test_saved_file_gets_the_usual_permissions(tmp_path):
    path = tmp_path / "weights.npz"
    mv.save({"w": mv.ones(2)}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_load_state_dict_accepts_nested_lists():
    layer = nn.Linear(2, 2)
    layer.load_state_dict({"weight": [[1.0, 2.0], [3.0, 4.0]], "bias": [0.5, -0.5]})
    np.testing.assert_array_equal(layer.weight.numpy(), [[1, 2], [3, 4]])
    assert layer.weight.dtype == np.float32
    with pytest.raises(
        ValueError, match=r"shape mismatch for bias: checkpoint \(3,\), model \(2,\)"
    ):
        layer.load_state_dict({"weight": [[1.0, 2.0], [3.0, 4.0]], "bias": [0.0, 0.0, 0.0]})
