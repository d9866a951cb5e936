"""Optimizers (SGD, Adam) and learning-rate schedules with PyTorch's update rules.

Each optimizer keeps ``param_groups`` (a list of dicts holding "params" and the
hyper-parameters) so a schedule can change ``lr`` per group, as in PyTorch.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from minivision import _adam_cuda
from minivision.backend import device_of, get_array_module, to_device
from minivision.dispatch import cuda_kernels_apply
from minivision.tensor import Tensor, no_grad


class Optimizer:
    defaults: dict = {}
    # Each subclass lists its per-parameter state, which load_state_dict checks: a parameter's
    # state is empty or holds exactly these keys, "array" ones buffers of the parameter's shape,
    # "count" ones non-negative integers.
    state_keys: dict = {}

    def __init__(self, params, **hyper):
        for name, value in hyper.items():
            if value < 0:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 0, got {value}")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for group in groups:
            group = {**hyper, **group, "params": list(group["params"])}
            for p in group["params"]:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise TypeError(
                        f"{type(self).__name__} optimizes Tensors that require grad, got {p!r:.60}"
                    )
            self.param_groups.append(group)
        self.state: dict = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad.data, group, self.state.setdefault(id(p), {}))

    def _update(self, p: Tensor, grad, group: dict, state: dict) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Hyper-parameters per group and per-parameter state keyed by the parameter's
        position over all groups (positions, not identities, survive a restart)."""
        params = [p for group in self.param_groups for p in group["params"]]
        return {
            "param_groups": [
                {k: v for k, v in group.items() if k != "params"} for group in self.param_groups
            ],
            "state": {
                i: dict(self.state[id(p)]) for i, p in enumerate(params) if id(p) in self.state
            },
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what ``state_dict`` returned, onto this optimizer's own parameters. Every
        entry is checked against its parameter before anything changes: a state that could not
        have come from this optimizer is a one-line ValueError naming the parameter and key."""
        if not isinstance(state_dict, dict) or not {"param_groups", "state"} <= state_dict.keys():
            raise ValueError(
                "optimizer state must be a dict with 'param_groups' and 'state' (what state_dict() "
                f"returns), got {type(state_dict).__name__}"
                + (f" with keys {sorted(state_dict)}" if isinstance(state_dict, dict) else "")
            )
        groups = state_dict["param_groups"]
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise ValueError(
                f"optimizer state's 'param_groups' must be a list of dicts, got {groups!r:.60}"
            )
        for i, (group, saved) in enumerate(zip(self.param_groups, groups)):
            unknown = sorted(k for k in saved if k == "params" or k not in group)
            if unknown:
                raise ValueError(
                    f"optimizer state's param_groups[{i}] has keys {unknown} this optimizer does not take"
                )
        if not isinstance(state_dict["state"], dict):
            raise ValueError(
                f"optimizer state's 'state' must be a dict, got {type(state_dict['state']).__name__}"
            )
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"optimizer state has {len(groups)} parameter groups, this optimizer {len(self.param_groups)}"
            )
        params = [p for group in self.param_groups for p in group["params"]]
        state = {}
        for index, entry in state_dict["state"].items():
            p = params[self._param_index(index, len(params))]
            self._check_entry(index, entry, p)
            # each parameter's buffers on its own device, wherever they were saved from, and copied:
            # steps update them in place, which must not reach the caller's (or another optimizer's) arrays
            state[id(p)] = {
                k: to_device(v, p.device).copy() if self.state_keys[k] == "array" else v
                for k, v in entry.items()
            }
        for group, saved in zip(self.param_groups, groups):
            group.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()})
        self.state = state

    @staticmethod
    def _param_index(index, count: int) -> int:
        """The position ``index`` (an int or a string of digits) names, checked to be one of ``count``."""
        position = int(index) if isinstance(index, numbers.Integral) or str(index).isdigit() else -1
        if not 0 <= position < count:
            raise ValueError(
                f"optimizer state names parameter {index!r}, expected an index from 0 to {count - 1}"
            )
        return position

    def _check_entry(self, index, entry, p: Tensor) -> None:
        """Raise a ValueError unless ``entry`` is a state this optimizer could hold for ``p``."""
        where = f"optimizer state for parameter {index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
        if entry and entry.keys() != self.state_keys.keys():
            raise ValueError(
                f"{where} has keys {sorted(entry)}, expected {sorted(self.state_keys)} or none"
            )
        for key, value in entry.items():
            if self.state_keys[key] == "count":
                if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
                    raise ValueError(
                        f"{where}: {key!r} must be a non-negative integer, got {value!r}"
                    )
            elif not (isinstance(value, np.ndarray) or device_of(value) == "cuda"):
                raise ValueError(
                    f"{where}: {key!r} must be a NumPy or CuPy array, got {type(value).__name__}"
                )
            elif value.dtype.kind != "f":
                raise ValueError(
                    f"{where}: {key!r} must be a floating-point array, got dtype {value.dtype}"
                )
            elif tuple(value.shape) != tuple(p.shape):
                raise ValueError(
                    f"{where}: {key!r} has shape {tuple(value.shape)}, expected the parameter's "
                    f"shape {tuple(p.shape)}"
                )


class SGD(Optimizer):
    """p -= lr * v, with v the (Nesterov) momentum buffer of grad + weight_decay * p."""

    state_keys = {"momentum_buffer": "array"}

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(
            params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay
        )
        for group in self.param_groups:
            group.setdefault("nesterov", nesterov)

    def _update(self, p, grad, group, state):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        momentum = group["momentum"]
        if momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.copy()
            else:
                buf = state["momentum_buffer"]
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            buf = state["momentum_buffer"]
            grad = grad + momentum * buf if group["nesterov"] else buf
        p.data -= (group["lr"] * grad).astype(p.dtype)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` adds L2 to the gradient."""

    state_keys = {"step": "count", "exp_avg": "array", "exp_avg_sq": "array"}

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        super().__init__(params, lr=lr, eps=eps, weight_decay=weight_decay)
        for group in self.param_groups:
            group.setdefault("betas", tuple(betas))

    def _update(self, p, grad, group, state):
        xp = get_array_module(p.data)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        step_size = group["lr"] / (1 - beta1 ** state["step"])
        bias2_sqrt = math.sqrt(1 - beta2 ** state["step"])
        if cuda_kernels_apply(p.data) and all(
            a.flags.c_contiguous and a.dtype == p.dtype for a in (m, v, p.data)
        ):
            _adam_cuda.adam_step(
                p.data,
                grad,
                m,
                v,
                group["weight_decay"],
                beta1,
                beta2,
                step_size,
                bias2_sqrt,
                group["eps"],
            )
            return
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        denom = xp.sqrt(v) / bias2_sqrt + group["eps"]
        p.data -= (step_size * m / denom).astype(p.dtype)


class LRScheduler:
    """Sets each group's ``lr`` from its initial value and the epoch count; call ``step()``
    once per epoch after the optimizer's step."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lrs = [
            group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups
        ]
        self.last_epoch = 0

    def lr_at(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError

    def get_last_lr(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        self.last_epoch += 1
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(base, self.last_epoch)


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2 for epoch <= T_max."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, base_lr, epoch):
        return (
            self.eta_min
            + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        )
