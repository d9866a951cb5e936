"""Train, reload and apply registered models on named data: what ``minivision train``,
``eval``, ``predict`` and ``demo`` do, as functions a script or tutorial can call too.

Data specs: ``shapes`` and ``digits`` (synthetic, generated on the fly: train split seed 0,
val split seed 1), ``voc:PATH`` (a VOC folder; images resized to ``image_size`` squares)
and ``coco:ANNOTATIONS.json`` (images in an ``images`` folder beside the file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import minivision as mv
from minivision import optim
from minivision.checkpoint import read_checkpoint
from minivision.data import (
    COCODetection,
    DataLoader,
    DigitsOnCanvas,
    Shapes,
    VOCDetection,
    VOCSegmentation,
    transforms,
)
from minivision.data._image import resize_bilinear, resize_nearest
from minivision.memory_plan import available_memory, format_bytes, plan_run
from minivision.models import RECIPES, model_class
from minivision.models.evaluation import evaluate_model
from minivision.train import fit
from minivision.training_meta import MAX_IMAGE_SIZE, check_meta, config_matches, make_meta

VAL_IMAGES = 256


class UsageError(ValueError):
    """A mistake in what the user asked for (a bad data spec, a foreign checkpoint)."""


def make_dataset(
    spec: str,
    split: str,
    image_size: int,
    task: str = "detection",
    max_objects: int = 1,
    num_images: int = VAL_IMAGES,
    object_sizes=None,
):
    """The dataset a ``--data`` spec names, for one split ("train" or "val"). ``object_sizes``:
    Shapes' (smallest, largest) object side as fractions of ``image_size`` (None: its default)."""
    kind, _, path = spec.partition(":")
    seed = 0 if split == "train" else 1
    if kind == "shapes" and not path:
        sizes = None if object_sizes is None else tuple(f * image_size for f in object_sizes)
        return Shapes(
            num_images,
            image_size=image_size,
            min_objects=1,
            max_objects=max_objects,
            seed=seed,
            object_sizes=sizes,
        )
    if kind == "digits" and not path:
        return DigitsOnCanvas(
            num_images, canvas_size=image_size, min_objects=1, max_objects=max_objects, seed=seed
        )
    resize = transforms.Resize(image_size)
    if kind == "voc" and path:
        reader = VOCSegmentation if task == "segmentation" else VOCDetection
        return reader(path, image_set=split, transform=resize)
    if kind == "coco" and path and task == "detection":
        if not Path(path).is_file():
            what = "a folder" if Path(path).is_dir() else "not there"
            raise UsageError(
                f"--data coco:PATH must name the annotations .json file (images are read from the "
                f"'images' folder beside it), got {path!r}, which is {what}"
            )
        return COCODetection(Path(path).parent / "images", path, transform=resize)
    raise UsageError(
        f"--data must be shapes, digits, voc:PATH or (detection only) coco:ANNOTATIONS.json, got {spec!r}"
    )


def loader(dataset, batch_size: int, shuffle: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, seed=0)


def _check_fits(what: str, plan_of, options: str, device: str) -> None:
    """Refuse, in one line, a run whose memory plan exceeds what ``device`` has.
    ``plan_of(cheap_only)`` makes the plan; the cheap one (no probe) is checked first."""
    available, source = available_memory(device)
    for cheap in (True, False):
        plan = plan_of(cheap)
        if plan.total > available:
            fits = plan.largest_batch(available) if plan.probed else 0
            advice = f"--batch-size {fits} fits" if fits >= 1 else f"lower {options}"
            raise UsageError(
                f"{what} needs {plan.describe()} but {format_bytes(available)} is {source}; {advice}"
            )


def _check_option(name: str, value, low, high=None) -> None:
    if value is not None and not (low <= value and (high is None or value <= high)):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise UsageError(f"{name} must be {bound}, got {value}")


def _training_options(name: str, epochs, batch_size, lr, train_images, image_size) -> dict:
    """The options of a training run, each unset (None) one from the model's recipe, each
    range-checked."""
    recipe = RECIPES[name]
    options = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "train_images": train_images,
        "image_size": image_size,
    }
    options = {k: getattr(recipe, k) if v is None else v for k, v in options.items()}
    for option, low, high in (
        ("epochs", 1, None),
        ("batch_size", 1, None),
        ("train_images", 1, None),
        ("image_size", 1, MAX_IMAGE_SIZE),
    ):
        _check_option("--" + option.replace("_", "-"), options[option], low, high)
    if not (np.isfinite(options["lr"]) and options["lr"] >= 0):
        raise UsageError(f"--lr must be a finite number >= 0, got {options['lr']}")
    return options


def plan_training(
    name: str,
    data: str,
    *,
    epochs=None,
    batch_size=None,
    lr=None,
    train_images=None,
    image_size=None,
    device: str = "cpu",
):
    """Check a training run's options and memory plan without building or training anything;
    return (options, training set, validation set). Unset (None) options come from the recipe."""
    cls = model_class(name)
    recipe = RECIPES[name]
    options = _training_options(name, epochs, batch_size, lr, train_images, image_size)
    image_size = options["image_size"]
    train_set = make_dataset(
        data,
        "train",
        image_size,
        cls.task,
        recipe.max_objects,
        options["train_images"],
        recipe.object_sizes,
    )
    val_set = make_dataset(
        data, "val", image_size, cls.task, recipe.max_objects, object_sizes=recipe.object_sizes
    )
    batch_size = options["batch_size"]
    _check_fits(
        f"training {name} at --image-size {image_size} with --batch-size {batch_size}",
        lambda cheap: plan_run(
            cls,
            train_set.num_classes,
            image_size,
            batch_size,
            training=True,
            num_images=len(train_set),
            cheap_only=cheap,
        ),
        "--batch-size, --image-size or --train-images",
        device,
    )
    return options, train_set, val_set


def train_model(
    name: str,
    data: str,
    out,
    *,
    epochs=None,
    batch_size=None,
    lr=None,
    train_images=None,
    image_size=None,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    seed: int = 0,
):
    """Train a registered model's tiny configuration; write ``out/checkpoint.npz`` after
    every epoch. Unset (None) hyper-parameters come from the model's recipe; ``seed`` fixes
    the initial weights (and dropout), so a run repeats exactly on the CPU. The options and
    the memory plan are checked before anything is built (``plan_training``).
    Returns (model, history, validation loader)."""
    cls = model_class(name)
    options, train_set, val_set = plan_training(
        name,
        data,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        train_images=train_images,
        image_size=image_size,
        device=device,
    )
    epochs, batch_size, lr, image_size = (
        options["epochs"],
        options["batch_size"],
        options["lr"],
        options["image_size"],
    )
    os.makedirs(out, exist_ok=True)
    mv.manual_seed(seed)
    model = cls.tiny(train_set.num_classes, image_size).to(device)
    opt = optim.Adam(model.parameters(), lr=lr)
    val_loader = loader(val_set, batch_size, shuffle=False)

    def loss_fn(m, batch):
        images, targets = batch
        return m.loss(images.to(device), targets)

    meta = make_meta(name, model, data, train_set.class_names, RECIPES[name].max_objects)
    history = fit(
        model,
        loader(train_set, batch_size, shuffle=True),
        opt,
        loss_fn,
        epochs,
        scheduler=optim.CosineAnnealingLR(opt, epochs),
        evaluate=lambda m, epoch: evaluate_model(m, _on_device(val_loader, device)),
        checkpoint=os.path.join(out, "checkpoint.npz"),
        resume=resume,
        progress=progress,
        meta=meta,
    )
    return model, history, val_loader


def _on_device(batches, device):
    """The loader's batches with images moved to ``device``."""
    for images, targets in batches:
        yield images.to(device), targets


def load_trained(checkpoint, device: str = "cpu", batch_size: int = 1):
    """(model in eval mode, meta) rebuilt from a checkpoint written by ``train_model``; its
    meta is checked first, then the memory plan of evaluating ``batch_size`` images."""
    state, _, info = read_checkpoint(checkpoint)
    meta = check_meta(info.get("meta"), checkpoint)
    cls, classes, size = (
        model_class(meta["model"]),
        len(meta["class_names"]),
        meta["config"]["image_size"],
    )
    _check_fits(
        f"evaluating {meta['model']} at image size {size} with batch size {batch_size}",
        lambda cheap: plan_run(cls, classes, size, batch_size, training=False, cheap_only=cheap),
        "--batch-size",
        device,
    )
    model = cls.tiny(classes, size)
    config_matches(model, meta, checkpoint)
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def evaluate_checkpoint(checkpoint, data=None, batch_size: int = 32, device: str = "cpu") -> dict:
    """Metrics of a trained checkpoint on the validation split of ``data`` (default: its own)."""
    model, meta = load_trained(checkpoint, device, batch_size)
    dataset = make_dataset(
        data or meta["data"],
        "val",
        model.config["image_size"],
        model.task,
        meta.get("max_objects", 1),
        object_sizes=RECIPES[meta["model"]].object_sizes,
    )
    return evaluate_model(
        model, _on_device(loader(dataset, batch_size, False), device), progress=True
    )


def predict_image(model, image, device: str = "cpu"):
    """Apply a trained model to one (3, H, W) image of any size: it is resized to the
    model's input size and the result mapped back. Detection: a dict of boxes, labels,
    scores in the image's pixels; segmentation: an (H, W) label mask."""
    size = model.config["image_size"]
    height, width = image.shape[-2:]
    batch = mv.tensor(resize_bilinear(image, (size, size))[None], device=device)
    if model.task == "segmentation":
        return resize_nearest(np.asarray(model.predict(batch)[0]), (height, width))
    detections = model.predict(batch)[0]
    scale = np.array([width / size, height / size] * 2, dtype=np.float32)
    return {**detections, "boxes": detections["boxes"] * scale}


def draw_prediction(model, image, result, class_names, path, title=None, min_score: float = 0.3):
    """Save a PNG of ``predict_image``'s result over the image (detections scoring at
    least ``min_score``: a detector also returns its many unlikely boxes, for mAP)."""
    from minivision import viz

    if model.task == "segmentation":
        return viz.overlay_mask(image, result, title=title, path=path)
    names = ["background"] + list(class_names)
    shown = result["scores"] >= min_score
    return viz.draw_boxes(
        image,
        result["boxes"][shown],
        result["labels"][shown],
        result["scores"][shown],
        names,
        title=title,
        path=path,
    )
