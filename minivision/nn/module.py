"""``Module`` and ``Parameter``: containers of trainable state, as in ``torch.nn``."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minivision.backend import check_device, to_device
from minivision.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable; requires grad by default."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(
            data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad
        )

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _as_array(value):
    """A state_dict value as an array: a Tensor's data, an array as is, anything else (lists,
    numbers) through ``np.asarray``."""
    if isinstance(value, Tensor):
        return value.data
    return value if hasattr(value, "shape") and hasattr(value, "dtype") else np.asarray(value)


class Module:
    """Base class of layers and models.

    Assigning a Parameter, a Module or (through ``register_buffer``) an array to an
    attribute registers it, in assignment order, for ``parameters()``, ``state_dict()``,
    ``to()`` and ``train()``/``eval()``. Subclasses implement ``forward``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before assigning {name!r}"
            )
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # only called when normal lookup fails: look in the registries
        for registry in ("_parameters", "_buffers", "_modules"):
            found = self.__dict__.get(registry, {})
            if name in found:
                return found[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._modules, self._buffers):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value) -> None:
        """Register non-trainable state (e.g. running statistics) saved in ``state_dict``."""
        self.__dict__.pop(name, None)
        self._buffers[name] = value if value is None or isinstance(value, Tensor) else Tensor(value)

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        self._parameters[name] = value

    def add_module(self, name: str, module: "Module | None") -> None:
        self._modules[name] = module

    # ----------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ----------------------------------------------------------------- traversal
    def named_modules(self, prefix: str = ""):
        """Yield (name, module) for this module and every descendant, depth first."""
        stack = [(prefix, self)]
        seen = set()
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{n}" if name else n, m)
                for n, m in module._modules.items()
                if m is not None
            ]
            stack.extend(reversed(children))

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return (m for m in self._modules.values() if m is not None)

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def named_parameters(self, prefix: str = ""):
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        for module_name, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_name}.{name}" if module_name else name), b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every descendant and on self, children first."""
        for module in reversed(list(self.modules())):
            fn(module)
        return self

    # ----------------------------------------------------------------- modes and devices
    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, device) -> "Module":
        """Move every parameter and buffer to ``device`` in place (the same Parameter objects)."""
        device = check_device(device)
        for t in list(self.parameters()) + list(self.buffers()):
            t.data = to_device(t.data, device)
            if t.grad is not None:
                t.grad = Tensor(to_device(t.grad.data, device))
        return self

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self) -> "Module":
        return self.to("cuda")

    # ----------------------------------------------------------------- state
    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Parameters and buffers by dotted name; the Tensors share memory with the module."""
        state = OrderedDict()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, t in list(module._parameters.items()) + list(module._buffers.items()):
                if t is not None:
                    state[prefix + name] = t
        return state

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values from ``state_dict`` (Tensors or arrays) into this module's tensors.

        With ``strict`` every key must match: missing, unexpected and wrongly shaped keys
        are all named in one error, and nothing is changed. Returns (missing, unexpected).
        """
        own = self.state_dict()
        state_dict = {k: _as_array(v) for k, v in state_dict.items()}
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        for key, target in own.items():
            if key in state_dict:
                shape = tuple(state_dict[key].shape)
                if shape != target.shape:
                    mismatched.append(f"{key}: checkpoint {shape}, model {target.shape}")
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise ValueError(
                f"cannot load state_dict into {type(self).__name__}: " + ". ".join(problems)
            )
        for key, target in own.items():
            if key in state_dict:
                target.data = to_device(state_dict[key], target.device).astype(
                    target.dtype, copy=True
                )
        return missing, unexpected

    # ----------------------------------------------------------------- display
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
