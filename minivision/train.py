"""The training loop every model uses: ``fit``.

One epoch = one pass over the loader with a tqdm bar showing the running loss; then the
schedule steps, the optional ``evaluate`` hook adds metrics to the history, and a checkpoint
is written atomically. ``resume=True`` continues from that checkpoint exactly where an
uninterrupted run would be (same weights, optimizer state, data order and RNG), and a
non-finite loss stops training with the last good checkpoint left in place.
"""

from __future__ import annotations

import logging
import math
import os

from tqdm.auto import tqdm

from minivision.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def fit(
    model,
    loader,
    optimizer,
    loss_fn,
    epochs: int,
    *,
    scheduler=None,
    evaluate=None,
    checkpoint=None,
    resume: bool = False,
    progress: bool = True,
    meta=None,
) -> list[dict]:
    """Train ``model`` for ``epochs`` epochs; return the history, one dict per epoch.

    loss_fn(model, batch) -> scalar Tensor. evaluate(model, epoch) -> dict of metrics
    (called after each epoch, with the model in eval mode). checkpoint: a path written
    after each epoch; with ``resume`` an existing one is loaded first. ``meta`` (JSON-able)
    is stored in the checkpoint, e.g. the model's name and configuration.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    history, start = [], 0
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs checkpoint=<path>")
        if os.path.exists(checkpoint):
            info = load_checkpoint(checkpoint, model, optimizer, scheduler)
            history, start = info["history"], info["epoch"]
            log.info("resumed from %s after epoch %d", checkpoint, start)
    for epoch in range(start, epochs):
        mean_loss = _train_one_epoch(
            model, loader, optimizer, loss_fn, epoch, epochs, progress, checkpoint
        )
        record = {"epoch": epoch + 1, "loss": mean_loss, "lr": optimizer.param_groups[0]["lr"]}
        if scheduler is not None:
            scheduler.step()
        if evaluate is not None:
            model.eval()
            record.update(evaluate(model, epoch + 1))
        history.append(record)
        log.info(
            "epoch %d/%d: %s",
            epoch + 1,
            epochs,
            ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"),
        )
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, scheduler, epoch + 1, history, meta)
    return history


def _train_one_step(model, batch, optimizer, loss_fn) -> float:
    """One optimizer step; the loss's value. A non-finite loss is returned before any update.
    The step's graph (every saved activation) is freed when this returns, before the next
    batch's forward pass starts."""
    loss = loss_fn(model, batch)
    value = float(loss.item())
    if math.isfinite(value):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return value


def _train_one_epoch(
    model, loader, optimizer, loss_fn, epoch, epochs, progress, checkpoint
) -> float:
    model.train()
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)  # the data order depends on the epoch alone, so resuming repeats it
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
    for step, batch in enumerate(bar):
        value = _train_one_step(model, batch, optimizer, loss_fn)
        if not math.isfinite(value):
            kept = (
                f"the last good checkpoint is {checkpoint}"
                if checkpoint and os.path.exists(checkpoint)
                else "no checkpoint was written"
            )
            raise TrainingDiverged(
                f"loss became {value} at epoch {epoch + 1}, step {step + 1}; training stopped and {kept}. "
                "Try a lower learning rate."
            )
        total, count = total + value, count + 1
        bar.set_postfix(loss=f"{total / count:.4f}")
    if count == 0:
        raise ValueError(
            "the loader yielded no batch; is the dataset empty or drop_last too strict?"
        )
    return total / count
