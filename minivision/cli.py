"""The ``minivision`` command: demo, train, eval, predict, models.

Every failure a user can cause (a bad path, an unknown model, a corrupt checkpoint, an
unreadable image) ends in one line on stderr and exit status 2, never a traceback;
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

import minivision as mv
from minivision import optim
from minivision.checkpoint import read_checkpoint
from minivision.data import COCODetection, DataLoader, DigitsOnCanvas, Shapes, VOCDetection, transforms
from minivision.data._image import read_image, resize_bilinear
from minivision.models import MODELS, build_model, model_class
from minivision.models.evaluation import evaluate_model
from minivision.train import fit

SYNTHETIC_SIZES = {"train": 2048, "val": 256}


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line."""


# --------------------------------------------------------------------------- data
def make_dataset(spec: str, split: str, image_size: int, max_objects: int = 1, num_images=None):
    """A dataset from a ``--data`` spec: shapes, digits, voc:PATH or coco:ANNOTATIONS.json.

    Synthetic splits differ by seed (train 0, val 1). Real images are resized to
    ``image_size`` squares; COCO images are looked for in an ``images`` folder beside the
    annotation file.
    """
    kind, _, path = spec.partition(":")
    count = num_images or SYNTHETIC_SIZES[split]
    seed = 0 if split == "train" else 1
    if kind == "shapes" and not path:
        return Shapes(count, image_size=image_size, min_objects=1, max_objects=max_objects, seed=seed)
    if kind == "digits" and not path:
        return DigitsOnCanvas(count, canvas_size=image_size, min_objects=1, max_objects=max_objects, seed=seed)
    resize = transforms.Resize(image_size)
    if kind == "voc" and path:
        return VOCDetection(path, image_set=split, transform=resize)
    if kind == "coco" and path:
        return COCODetection(Path(path).parent / "images", path, transform=resize)
    raise UsageError(f"--data must be shapes, digits, voc:PATH or coco:ANNOTATIONS.json, got {spec!r}")


def _loader(dataset, batch_size, shuffle):
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, seed=0)


def _to_device(images, device):
    return images.to(device) if device != "cpu" else images


# --------------------------------------------------------------------------- commands
def train_model(name, data, epochs, batch_size, lr, out, device="cpu", resume=False, image_size=64,
                train_images=None, progress=True):
    """Train a registered model; write ``out/checkpoint.npz``; return (model, history, val loader)."""
    os.makedirs(out, exist_ok=True)
    train_set = make_dataset(data, "train", image_size, num_images=train_images)
    val_set = make_dataset(data, "val", image_size)
    model = model_class(name).tiny(train_set.num_classes, image_size).to(device)
    opt = optim.Adam(model.parameters(), lr=lr)
    schedule = optim.CosineAnnealingLR(opt, epochs)
    val_loader = _loader(val_set, batch_size, shuffle=False)

    def loss_fn(m, batch):
        images, targets = batch
        return m.loss(_to_device(images, device), targets)

    meta = {"model": name, "config": model.config, "data": data, "class_names": list(train_set.class_names)}
    history = fit(model, _loader(train_set, batch_size, shuffle=True), opt, loss_fn, epochs, scheduler=schedule,
                  evaluate=lambda m, epoch: evaluate_model(m, val_loader), checkpoint=os.path.join(out, "checkpoint.npz"),
                  resume=resume, progress=progress, meta=meta)
    return model, history, val_loader


def load_trained(checkpoint, device="cpu"):
    """(model, meta) rebuilt from a checkpoint written by ``minivision train``."""
    state, _, info = read_checkpoint(checkpoint)
    meta = info.get("meta", {})
    if meta.get("model") not in MODELS:
        raise UsageError(f"{checkpoint} was not written by `minivision train` (it names no known model)")
    model = build_model(meta["model"], **meta["config"])
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def _print_metrics(prefix, metrics):
    print(prefix + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


def cmd_models(args):
    for name, cls in sorted(MODELS.items()):
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12s} {cls.task:13s} {summary}")
    return 0


def cmd_train(args):
    _, history, _ = train_model(args.model, args.data, args.epochs, args.batch_size, args.lr, args.out,
                                args.device, args.resume, args.image_size, args.train_images)
    _print_metrics(f"epoch {history[-1]['epoch']}: ", {k: v for k, v in history[-1].items() if k != "epoch"})
    print(f"checkpoint: {os.path.join(args.out, 'checkpoint.npz')}")
    return 0


def cmd_eval(args):
    model, meta = load_trained(args.checkpoint, args.device)
    dataset = make_dataset(args.data or meta["data"], "val", model.config["image_size"])
    _print_metrics("", evaluate_model(model, _loader(dataset, args.batch_size, False), progress=True))
    return 0


def cmd_predict(args):
    from minivision import viz

    model, meta = load_trained(args.checkpoint, args.device)
    image = read_image(args.image)
    size = model.config["image_size"]
    height, width = image.shape[-2:]
    resized = resize_bilinear(image, (size, size))
    detections = model.predict(_to_device(mv.tensor(resized[None]), args.device))[0]
    boxes = detections["boxes"] * np.array([width / size, height / size] * 2, dtype=np.float32)
    names = ["background"] + meta["class_names"]
    viz.draw_boxes(image, boxes, detections["labels"], detections["scores"], names, path=args.out)
    for box, label, score in zip(boxes, detections["labels"], detections["scores"]):
        print(f"{names[int(label)]} {score:.2f} at ({', '.join(f'{v:.1f}' for v in box)})")
    print(f"wrote {args.out}")
    return 0


def cmd_demo(args):
    """Train the localizer on Shapes, evaluate it, save pictures and the checkpoint."""
    from minivision import viz

    start = time.time()
    out = Path(args.out)
    print(f"training a localizer (classify + regress one box) on synthetic Shapes for {args.epochs} epochs")
    model, history, val_loader = train_model("localizer", "shapes", args.epochs, 32, 2e-3, out,
                                             args.device, image_size=64, train_images=args.train_images)
    final = history[-1]
    print(f"validation: localization accuracy {final['loc_acc']:.3f}, mAP@0.5 {final['map50']:.3f} "
          f"({len(val_loader.dataset)} images)")
    images, targets = next(iter(val_loader))
    predictions = model.predict(_to_device(images, args.device))
    names = ["background"] + list(val_loader.dataset.class_names)
    for i in range(args.pictures):
        p = predictions[i]
        viz.draw_boxes(images.numpy()[i], p["boxes"], p["labels"], p["scores"], names,
                       title=f"truth: {names[int(targets[i]['labels'][0])]}", path=out / f"prediction_{i}.png")
    viz.loss_curves(history, keys=["loss", "loc_acc"], path=out / "history.png")
    with open(out / "metrics.json", "w") as f:
        json.dump(history, f, indent=1)
    print(f"wrote {out / 'checkpoint.npz'}, {args.pictures} prediction PNGs and history.png to {out}/ "
          f"in {time.time() - start:.0f} s")
    return 0


# --------------------------------------------------------------------------- parsing
def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minivision", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each epoch")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train and evaluate a small model on built-in synthetic data")
    demo.add_argument("--out", default="minivision-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--epochs", type=_positive_int, default=10)
    demo.add_argument("--train-images", type=_positive_int, default=SYNTHETIC_SIZES["train"])
    demo.add_argument("--pictures", type=_positive_int, default=4)
    demo.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    demo.set_defaults(handler=cmd_demo)

    train = sub.add_parser("train", help="train a model")
    train.add_argument("model", help="a name from `minivision models`")
    train.add_argument("--data", default="shapes", help="shapes, digits, voc:PATH or coco:ANNOTATIONS.json")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--image-size", type=_positive_int, default=64)
    train.add_argument("--train-images", type=_positive_int, help="synthetic data: how many training images")
    train.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    train.add_argument("--out", default="runs/train")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    train.set_defaults(handler=cmd_train)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data", help="default: the data it was trained on")
    evaluate.add_argument("--batch-size", type=_positive_int, default=32)
    evaluate.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    evaluate.set_defaults(handler=cmd_eval)

    predict = sub.add_parser("predict", help="draw a checkpoint's predictions on an image")
    predict.add_argument("checkpoint")
    predict.add_argument("image")
    predict.add_argument("--out", default="prediction.png")
    predict.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    predict.set_defaults(handler=cmd_predict)

    models = sub.add_parser("models", help="list the models")
    models.set_defaults(handler=cmd_models)
    _add_assignment_parser(sub)
    return parser


# --------------------------------------------------------------------------- assignments
def cmd_assignment_make(args):
    from minivision.assignment import make_student_copy

    summary = make_student_copy(args.out, args.include)
    for region in summary["regions"]:
        print(f"{region['part']:14s} {region['file']}:{region['line']}")
    notebooks = ", ".join(summary["notebooks"]) or "none"
    print(f"wrote a student copy of {', '.join(summary['parts'])} to {args.out} (notebooks: {notebooks})")
    return 0


def cmd_assignment_grade(args):
    from minivision.assignment import grade, score_table

    print(score_table(grade(args.student_dir, args.parts, json_path=args.json)))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _add_assignment_parser(sub):
    """`minivision assignment make OUT --include conv,pool` and `minivision assignment grade DIR`."""
    assignment = sub.add_parser("assignment", help="write student copies of the package and grade them")
    commands = assignment.add_subparsers(dest="assignment_command", required=True)
    make = commands.add_parser("make", help="write a student copy with the chosen parts taken out")
    make.add_argument("out", help="a new or empty folder")
    make.add_argument("--include", required=True, metavar="PARTS",
                      help="comma-separated parts, e.g. conv,pool,nms (an unknown name lists them all)")
    make.set_defaults(handler=cmd_assignment_make)
    grade = commands.add_parser("grade", help="run the instructor's tests of each part against a copy")
    grade.add_argument("student_dir", help="a folder holding a minivision package")
    grade.add_argument("--parts", help="comma-separated parts (default: those the copy was made with, else all)")
    grade.add_argument("--json", metavar="PATH", help="also write the scores as JSON")
    grade.set_defaults(handler=cmd_assignment_grade)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.handler(args)
    except (UsageError, ValueError, TypeError, OSError, ImportError, RuntimeError, KeyError) as exc:
        if args.debug:
            raise
        print(f"minivision: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minivision: interrupted", file=sys.stderr)
        return 130
