"""Optimizers and schedules follow PyTorch's trajectories step for step."""

import numpy as np
import pytest

import minivision as mv
from minivision import optim
from tests.helpers import assert_close, torch_or_skip


def _quadratic_trajectories(make_ours, make_theirs, steps=20, schedule=None):
    """Minimise sum((A p - b)^2) from the same start with both libraries; return both paths."""
    torch = torch_or_skip()
    rng = np.random.default_rng(0)
    a, b, p0 = rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal(3)
    ours = mv.Tensor(p0.copy(), requires_grad=True)
    theirs = torch.tensor(p0.copy(), requires_grad=True)
    opt_ours, opt_theirs = make_ours([ours]), make_theirs([theirs])
    sched_ours, sched_theirs = schedule(opt_ours, opt_theirs) if schedule else (None, None)
    for step in range(steps):
        opt_ours.zero_grad()
        (((mv.tensor(a) @ ours) - mv.tensor(b)) ** 2.0).sum().backward()
        opt_ours.step()
        opt_theirs.zero_grad()
        (((torch.tensor(a) @ theirs) - torch.tensor(b)) ** 2).sum().backward()
        opt_theirs.step()
        if schedule:
            sched_ours.step()
            sched_theirs.step()
            assert sched_ours.get_last_lr() == pytest.approx(sched_theirs.get_last_lr(), rel=1e-12)
        assert_close(ours, theirs, rtol=1e-10, atol=1e-12, what=f"parameters after step {step + 1}")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.01},
        {"lr": 0.01, "momentum": 0.9},
        {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
        {"lr": 0.01, "momentum": 0.5, "dampening": 0.3},
    ],
)
def test_sgd_matches_torch(kwargs):
    torch = torch_or_skip()
    _quadratic_trajectories(
        lambda p: optim.SGD(p, **kwargs), lambda p: torch.optim.SGD(p, **kwargs)
    )


@pytest.mark.parametrize(
    "kwargs", [{"lr": 0.05}, {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}]
)
def test_adam_matches_torch(kwargs):
    torch = torch_or_skip()
    _quadratic_trajectories(
        lambda p: optim.Adam(p, **kwargs), lambda p: torch.optim.Adam(p, **kwargs)
    )


def test_step_lr_matches_torch():
    torch = torch_or_skip()
    _quadratic_trajectories(
        lambda p: optim.SGD(p, lr=0.02, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9),
        schedule=lambda a, b: (
            optim.StepLR(a, 6, gamma=0.5),
            torch.optim.lr_scheduler.StepLR(b, 6, gamma=0.5),
        ),
    )


def test_cosine_schedule_matches_torch():
    torch = torch_or_skip()
    _quadratic_trajectories(
        lambda p: optim.Adam(p, lr=0.05),
        lambda p: torch.optim.Adam(p, lr=0.05),
        schedule=lambda a, b: (
            optim.CosineAnnealingLR(a, 15, eta_min=0.001),
            torch.optim.lr_scheduler.CosineAnnealingLR(b, 15, eta_min=0.001),
        ),
    )


def test_parameters_without_gradient_are_left_alone():
    p, q = mv.tensor([1.0], requires_grad=True), mv.tensor([2.0], requires_grad=True)
    opt = optim.SGD([p, q], lr=0.1)
    (p * 3.0).sum().backward()
    opt.step()
    assert p.item() == pytest.approx(0.7) and q.item() == 2.0


def test_param_groups_take_their_own_lr():
    p, q = mv.tensor([1.0], requires_grad=True), mv.tensor([1.0], requires_grad=True)
    opt = optim.SGD([{"params": [p]}, {"params": [q], "lr": 1.0}], lr=0.1)
    (p + q).sum().backward()
    opt.step()
    assert p.item() == pytest.approx(0.9) and q.item() == pytest.approx(0.0)


def test_optimizer_bad_arguments():
    p = mv.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="SGD: lr must be >= 0, got -1"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="optimizes Tensors that require grad"):
        optim.SGD([mv.tensor([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="nesterov needs momentum > 0"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas must be in \[0, 1\)"):
        optim.Adam([p], betas=(0.9, 1.0))


# ----------------------------------------------------------------- load_state_dict
def _trained(make):
    """An optimizer over two parameters (shapes (3,) and (2, 2)) after one step, and its state."""
    params = [
        mv.tensor([1.0, 2.0, 3.0], requires_grad=True),
        mv.tensor(np.ones((2, 2)), requires_grad=True),
    ]
    opt = make(params)
    (params[0].sum() + (params[1] * params[1]).sum()).backward()
    opt.step()
    return opt, opt.state_dict()


@pytest.mark.parametrize(
    "make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.Adam(p, lr=0.1)]
)
def test_load_state_dict_restores_the_trajectory(make):
    opt, state = _trained(make)
    params = opt.param_groups[0]["params"]
    copies = [mv.tensor(p.numpy().copy(), requires_grad=True) for p in params]
    restored = make(copies)
    restored.load_state_dict(state)
    for o, ps in [(opt, params), (restored, copies)]:
        o.zero_grad()
        (ps[0].sum() + (ps[1] * ps[1]).sum()).backward()
        o.step()
    for p, q in zip(params, copies):
        np.testing.assert_array_equal(q.numpy(), p.numpy())


@pytest.mark.parametrize(
    "make,key",
    [
        (lambda p: optim.SGD(p, lr=0.1, momentum=0.9), "momentum_buffer"),
        (lambda p: optim.Adam(p, lr=0.1), "exp_avg_sq"),
    ],
)
def test_load_state_dict_rejects_a_buffer_of_the_wrong_shape_dtype_or_type(make, key):
    opt, state = _trained(make)
    before = {i: dict(entry) for i, entry in state["state"].items()}
    cases = [
        (
            np.zeros(3),
            rf"parameter 1: '{key}' has shape \(3,\), expected the parameter's shape \(2, 2\)",
        ),
        (
            np.zeros((2, 2), dtype=np.int64),
            rf"parameter 1: '{key}' must be a floating-point array, got dtype int64",
        ),
        (
            [[0.0, 0.0], [0.0, 0.0]],
            rf"parameter 1: '{key}' must be a NumPy or CuPy array, got list",
        ),
    ]
    for bad, message in cases:
        state["state"][1] = {**before[1], key: bad}
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(state)
    assert opt.state_dict()["state"][1][key].shape == (2, 2)  # a refused state changes nothing


def test_load_state_dict_rejects_a_missing_parameter_wrong_keys_and_a_bad_step():
    opt, state = _trained(lambda p: optim.Adam(p, lr=0.1))
    entry = state["state"][0]
    with pytest.raises(ValueError, match=r"names parameter 2, expected an index from 0 to 1"):
        opt.load_state_dict({**state, "state": {2: entry}})
    with pytest.raises(ValueError, match=r"names parameter 'first', expected an index from 0 to 1"):
        opt.load_state_dict({**state, "state": {"first": entry}})
    with pytest.raises(
        ValueError,
        match=r"parameter 0 has keys \['exp_avg', 'step'\], expected "
        r"\['exp_avg', 'exp_avg_sq', 'step'\] or none",
    ):
        opt.load_state_dict({**state, "state": {0: {"step": 1, "exp_avg": entry["exp_avg"]}}})
    with pytest.raises(
        ValueError, match=r"parameter 0: 'step' must be a non-negative integer, got 1.5"
    ):
        opt.load_state_dict({**state, "state": {0: {**entry, "step": 1.5}}})
    with pytest.raises(ValueError, match=r"state for parameter 0 must be a dict, got list"):
        opt.load_state_dict({**state, "state": {0: [entry]}})
    sgd, sgd_state = _trained(lambda p: optim.SGD(p, lr=0.1, momentum=0.9))
    with pytest.raises(
        ValueError,
        match=r"parameter 0 has keys \['exp_avg', 'exp_avg_sq', 'step'\], expected "
        r"\['momentum_buffer'\] or none",
    ):
        sgd.load_state_dict({**sgd_state, "state": {0: entry}})


@pytest.mark.parametrize(
    "state, message",
    [
        ([], r"optimizer state must be a dict with 'param_groups' and 'state' .* got list"),
        ({"state": {}}, r"got dict with keys \['state'\]"),
        ({"param_groups": [1], "state": {}}, r"'param_groups' must be a list of dicts, got \[1\]"),
        (
            {"param_groups": [{"params": [0]}], "state": {}},
            r"param_groups\[0\] has keys \['params'\]",
        ),
        (
            {"param_groups": [{"lr": 0.1, "colour": 1}], "state": {}},
            r"param_groups\[0\] has keys \['colour'\]",
        ),
        ({"param_groups": [{"lr": 0.1}], "state": []}, r"'state' must be a dict, got list"),
    ],
)
def test_load_state_dict_rejects_a_malformed_state(state, message):
    w = mv.nn.Parameter(np.ones((2, 2)))
    opt = optim.SGD([w], lr=0.5, momentum=0.9)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["params"] == [w]
