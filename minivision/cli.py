"""The ``minivision`` command: demo, train, eval, predict, models.

Every failure a user can cause (a bad path, an unknown model, a corrupt checkpoint, an
unreadable image) ends in one line on stderr and exit status 2, never a traceback;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from minivision.backend import cuda_available
from minivision.models import MODELS, RECIPES
from minivision.serialization import atomic_write
from minivision.training_meta import MAX_IMAGE_SIZE
from minivision.viz import require_matplotlib
from minivision.workflow import (
    VAL_IMAGES,
    UsageError,
    draw_prediction,
    evaluate_checkpoint,
    load_trained,
    plan_training,
    predict_image,
    train_model,
)

DEMO_MODELS = ("yolo", "unet")
# The longest side of the picture `predict` draws on: a larger image is reduced while decoded.
PICTURE_SIDE = 1024


def _print_metrics(prefix, metrics):
    print(prefix + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


def cmd_models(args):
    for name, cls in sorted(MODELS.items()):
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12s} {cls.task:13s} {summary}")
    return 0


def cmd_train(args):
    _, history, _ = train_model(
        args.model,
        args.data,
        args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        train_images=args.train_images,
        image_size=args.image_size,
        device=args.device,
        resume=args.resume,
    )
    _print_metrics(
        f"epoch {history[-1]['epoch']}: ", {k: v for k, v in history[-1].items() if k != "epoch"}
    )
    print(f"checkpoint: {Path(args.out) / 'checkpoint.npz'}")
    return 0


def cmd_eval(args):
    _print_metrics(
        "", evaluate_checkpoint(args.checkpoint, args.data, args.batch_size, args.device)
    )
    return 0


def cmd_predict(args):
    from minivision.data._image import image_size, read_image

    require_matplotlib("minivision predict draws its result")
    model, meta = load_trained(args.checkpoint, args.device)
    width, height = image_size(args.image)
    image = read_image(args.image, max_side=PICTURE_SIDE)
    result = predict_image(model, image, args.device)
    draw_prediction(model, image, result, meta["class_names"], args.out)
    names = ["background"] + meta["class_names"]
    if model.task == "detection":
        to_original = np.array([width / image.shape[2], height / image.shape[1]] * 2)
        for box, label, score in zip(
            result["boxes"] * to_original, result["labels"], result["scores"]
        ):
            print(f"{names[int(label)]} {score:.2f} at ({', '.join(f'{v:.1f}' for v in box)})")
    else:
        labels, counts = np.unique(result, return_counts=True)
        print(
            "pixels per class: " + ", ".join(f"{names[int(k)]} {n}" for k, n in zip(labels, counts))
        )
    print(f"wrote {args.out}")
    return 0


def _demo_one(name, args, out: Path):
    """Train one model for the demo, print its validation metrics, save pictures."""
    from minivision import viz

    recipe = RECIPES[name]
    images = recipe.train_images if args.train_images is None else args.train_images
    epochs = recipe.epochs if args.epochs is None else args.epochs
    print(
        f"[{name}] training the tiny {MODELS[name].__name__} on synthetic Shapes ({images} images, {epochs} epochs)"
    )
    model, history, val_loader = train_model(
        name, "shapes", out, epochs=args.epochs, train_images=args.train_images, device=args.device
    )
    _print_metrics(
        f"[{name}] validation on {len(val_loader.dataset)} images: ",
        {k: v for k, v in history[-1].items() if k not in ("epoch", "lr", "loss")},
    )
    dataset = val_loader.dataset
    for i in range(args.pictures):
        image, _ = dataset[i]
        draw_prediction(
            model,
            image,
            predict_image(model, image, args.device),
            dataset.class_names,
            out / f"prediction_{i}.png",
            title=f"{name}, validation image {i}",
        )
    metric_keys = [k for k in history[-1] if k not in ("epoch", "lr")]
    viz.loss_curves(history, keys=metric_keys, title=name, path=out / "history.png")
    atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(history, indent=1).encode()))
    return history[-1]


def resolve_device(name: str) -> str:
    """``"auto"``: ``"cuda"`` where CuPy sees a GPU, else ``"cpu"``; other names as they are."""
    if name != "auto":
        return name
    return "cuda" if cuda_available() else "cpu"


def cmd_demo(args):
    """Train a tiny detector and a tiny segmenter on Shapes; save checkpoints and pictures."""
    start = time.time()
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise UsageError(
            f"--models: unknown model {unknown[0]!r}; choose from {', '.join(sorted(MODELS))}"
        )
    require_matplotlib("minivision demo draws its predictions and training curves")
    args.device = resolve_device(args.device)
    for name in names:  # every model's options and memory plan, before the first is trained
        plan_training(
            name, "shapes", epochs=args.epochs, train_images=args.train_images, device=args.device
        )
    print(f"running on {'the GPU (cuda)' if args.device == 'cuda' else 'the CPU'}")
    for name in names:
        _demo_one(name, args, Path(args.out) / name)
    print(
        f"wrote checkpoints, prediction PNGs and training curves to {args.out}/ in {time.time() - start:.0f} s"
    )
    return 0


# --------------------------------------------------------------------------- parsing
class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (the usage is one `--help` away)."""

    def error(self, message):
        self.exit(2, f"minivision: error: {message} (see {self.prog} --help)\n")


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer from ``low`` to ``high`` (no upper bound when None)."""
    expected = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive_float(text):
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


_positive_int = _int_in(1)
MAX_EPOCHS = 100_000


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minivision", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each epoch")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="train and evaluate a small model on built-in synthetic data"
    )
    demo.add_argument(
        "--out", default="minivision-demo", help="output folder (default: %(default)s)"
    )
    demo.add_argument(
        "--models", default=",".join(DEMO_MODELS), help="comma-separated (default: %(default)s)"
    )
    demo.add_argument("--epochs", type=_int_in(1, MAX_EPOCHS), help="default: each model's recipe")
    demo.add_argument("--train-images", type=_positive_int, help="default: each model's recipe")
    demo.add_argument(
        "--pictures",
        type=_int_in(0, VAL_IMAGES),
        default=4,
        help="validation images drawn per model",
    )
    demo.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto (default): the GPU where CuPy sees one, else the CPU",
    )
    demo.set_defaults(handler=cmd_demo)

    train = sub.add_parser("train", help="train a model")
    train.add_argument("model", help="a name from `minivision models`")
    train.add_argument(
        "--data", default="shapes", help="shapes, digits, voc:PATH or coco:ANNOTATIONS.json"
    )
    train.add_argument("--epochs", type=_int_in(1, MAX_EPOCHS), help="default: the model's recipe")
    train.add_argument("--batch-size", type=_positive_int, help="default: the model's recipe")
    train.add_argument("--lr", type=_non_negative_float, help="default: the model's recipe")
    train.add_argument(
        "--image-size", type=_int_in(1, MAX_IMAGE_SIZE), help="default: the model's recipe"
    )
    train.add_argument(
        "--train-images",
        type=_positive_int,
        help="synthetic data: training images (default: recipe)",
    )
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
    print(
        f"wrote a student copy of {', '.join(summary['parts'])} to {args.out} (notebooks: {notebooks})"
    )
    return 0


def cmd_assignment_grade(args):
    from minivision.assignment import grade, score_table

    limits = {} if args.timeout is None else {"timeout": args.timeout}
    print(score_table(grade(args.student_dir, args.parts, json_path=args.json, **limits)))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _add_assignment_parser(sub):
    """`minivision assignment make OUT --include conv,pool` and `minivision assignment grade DIR`."""
    assignment = sub.add_parser(
        "assignment", help="write student copies of the package and grade them"
    )
    commands = assignment.add_subparsers(dest="assignment_command", required=True)
    make = commands.add_parser("make", help="write a student copy with the chosen parts taken out")
    make.add_argument("out", help="a new or empty folder")
    make.add_argument(
        "--include",
        required=True,
        metavar="PARTS",
        help="comma-separated parts, e.g. conv,pool,nms (an unknown name lists them all)",
    )
    make.set_defaults(handler=cmd_assignment_make)
    grade = commands.add_parser(
        "grade", help="run the instructor's tests of each part against a copy"
    )
    grade.add_argument("student_dir", help="a folder holding a minivision package")
    grade.add_argument(
        "--parts", help="comma-separated parts (default: those the copy was made with, else all)"
    )
    grade.add_argument("--json", metavar="PATH", help="also write the scores as JSON")
    grade.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="limit for each step (the import check, each part's tests); a part that runs "
        "longer scores 0",
    )
    grade.set_defaults(handler=cmd_assignment_grade)


def _describe(exc: BaseException) -> str:
    """An exception as one line of text."""
    if isinstance(exc, MemoryError):
        return (
            f"out of memory ({exc or 'an allocation failed'}); lower --batch-size or --image-size"
        )
    if isinstance(exc, KeyError):
        return f"missing key {exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        return args.handler(args)
    except (
        UsageError,
        ValueError,
        TypeError,
        OSError,
        ImportError,
        RuntimeError,
        KeyError,
        MemoryError,
    ) as exc:
        if args.debug:
            raise
        print(f"minivision: error: {_describe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minivision: interrupted", file=sys.stderr)
        return 130
