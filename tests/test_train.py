"""fit: learning, history, evaluation hook, checkpoints, bit-for-bit resume, NaN handling."""

import os

import numpy as np
import pytest

import minivision as mv
from minivision import functional as F
from minivision import nn, optim
from minivision.checkpoint import read_checkpoint
from minivision.train import TrainingDiverged, fit


class ShuffledBatches:
    """A tiny loader whose order depends only on (seed, epoch), like minivision's DataLoader."""

    def __init__(self, x, y, batch_size=8, seed=0):
        self.x, self.y, self.batch_size, self.seed, self.epoch = x, y, batch_size, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            yield mv.tensor(self.x[idx]), mv.tensor(self.y[idx])

    def __len__(self):
        return -(-len(self.x) // self.batch_size)


def _problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return ShuffledBatches(x, y)


def _model():
    mv.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def _loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def _setup():
    model = _model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    return model, opt, optim.StepLR(opt, 2, gamma=0.5)


def test_fit_learns_and_records_history_with_metrics():
    loader = _problem()
    model, opt, sched = _setup()

    def evaluate(m, epoch):
        x, y = mv.tensor(loader.x), loader.y
        return {"accuracy": float((m(x).argmax(dim=1).numpy() == y).mean())}

    history = fit(model, loader, opt, _loss, 6, scheduler=sched, evaluate=evaluate, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["accuracy"] >= 0.9
    assert [h["lr"] for h in history] == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025]


def test_resume_continues_bit_for_bit(tmp_path):
    straight_model, opt, sched = _setup()
    straight = fit(straight_model, _problem(), opt, _loss, 4, scheduler=sched, progress=False)

    path = tmp_path / "ckpt.npz"
    model, opt, sched = _setup()
    fit(model, _problem(), opt, _loss, 2, scheduler=sched, checkpoint=path, progress=False)
    mv.manual_seed(999)  # a restarted process would not share the generator's state
    model, opt, sched = _setup()
    resumed = fit(
        model,
        _problem(),
        opt,
        _loss,
        4,
        scheduler=sched,
        checkpoint=path,
        resume=True,
        progress=False,
    )

    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight]
    for (name, a), (_, b) in zip(straight_model.state_dict().items(), model.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_checkpoint_holds_epoch_history_and_meta(tmp_path):
    path = tmp_path / "ckpt.npz"
    model, opt, sched = _setup()
    fit(
        model,
        _problem(),
        opt,
        _loss,
        2,
        scheduler=sched,
        checkpoint=path,
        progress=False,
        meta={"model": "mlp"},
    )
    state, opt_state, info = read_checkpoint(path)
    assert info["epoch"] == 2 and len(info["history"]) == 2 and info["meta"] == {"model": "mlp"}
    assert set(state) == set(model.state_dict())
    assert opt_state["state"][0]["step"] == 2 * len(_problem())


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    model, opt, sched = _setup()
    fit(model, _problem(), opt, _loss, 1, checkpoint=path, progress=False)
    good = {k: v.numpy().copy() for k, v in read_checkpoint(path)[0].items()}

    def exploding(m, batch):
        return _loss(m, batch) * float("nan")

    with pytest.raises(
        TrainingDiverged, match=r"loss became nan at epoch 2, step 1.*last good checkpoint is"
    ):
        fit(model, _problem(), opt, exploding, 3, checkpoint=path, resume=True, progress=False)
    after = read_checkpoint(path)
    assert after[2]["epoch"] == 1
    for k, v in after[0].items():
        np.testing.assert_array_equal(v.numpy(), good[k])
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_fit_bad_arguments():
    model, opt, _ = _setup()
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        fit(model, _problem(), opt, _loss, 0)
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        fit(model, _problem(), opt, _loss, 1, resume=True)
    with pytest.raises(ValueError, match="yielded no batch"):
        fit(model, [], opt, _loss, 1, progress=False)


def test_reading_a_plain_npz_as_checkpoint_is_explained(tmp_path):
    path = tmp_path / "weights.npz"
    mv.save({"w": mv.ones(2)}, path)
    with pytest.raises(ValueError, match="not a minivision checkpoint"):
        read_checkpoint(path)
