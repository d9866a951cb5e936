"""Checks every model family's tests share: gradients reach every parameter, one batch is overfit."""

import numpy as np

from minivision import optim
from minivision.data import DataLoader, Shapes


def shapes_batch(count=4, image_size=32, seed=0, max_objects=1, object_sizes=None):
    """(images (N, 3, S, S) Tensor, targets) of Shapes images with 1..max_objects objects
    (of ``object_sizes`` pixels, as Shapes takes it)."""
    dataset = Shapes(
        count,
        image_size=image_size,
        min_objects=1,
        max_objects=max_objects,
        seed=seed,
        object_sizes=object_sizes,
    )
    return next(iter(DataLoader(dataset, batch_size=count)))


def assert_every_parameter_gets_a_gradient(model, batch=None):
    """One backward pass of ``model.loss`` on ``batch`` (default: two 32x32 images) reaches
    every parameter with a finite, non-zero gradient of the parameter's shape."""
    images, targets = batch if batch is not None else shapes_batch(2)
    model.loss(images, targets).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert parameter.grad.shape == parameter.shape, name
        assert np.isfinite(parameter.grad.numpy()).all(), name
    zero = [name for name, p in model.named_parameters() if not np.abs(p.grad.numpy()).max() > 0]
    assert not zero, f"all-zero gradients: {zero}"


def assert_overfits_one_batch(model, batch=None, steps=40, lr=1e-2, factor=5.0, loss_of=None):
    """Adam on one batch (default: four 32x32 images): the loss must fall by ``factor`` or more.
    ``loss_of(model, images, targets)``: the loss, if not ``model.loss(images, targets)``."""
    images, targets = batch if batch is not None else shapes_batch()
    loss_of = loss_of or (lambda m, x, t: m.loss(x, t))
    opt = optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_of(model, images, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    final = float(loss_of(model, images, targets).item())
    assert final < losses[0] / factor, f"loss went from {losses[0]:.3f} to {final:.3f}"
