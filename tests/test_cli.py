"""The minivision command, run as a user would: through a subprocess."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import subprocess_env

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd):
    env = subprocess_env()
    return subprocess.run(
        [sys.executable, "-m", "minivision", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_one_line_error(result, text):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minivision: error:"), result.stderr
    assert text in lines[0]


def test_models_lists_the_localizer(tmp_path):
    result = run("models", cwd=tmp_path)
    assert result.returncode == 0
    assert "localizer" in result.stdout and "detection" in result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A localizer trained for one short epoch: a checkpoint for eval/predict tests."""
    out = tmp_path_factory.mktemp("run")
    result = run(
        "train",
        "localizer",
        "--epochs",
        "1",
        "--train-images",
        "32",
        "--batch-size",
        "16",
        "--out",
        str(out),
        cwd=out,
    )
    assert result.returncode == 0, result.stderr
    assert "checkpoint:" in result.stdout and "loc_acc" in result.stdout
    return out / "checkpoint.npz"


def test_train_resume_eval_predict_round_trip(trained, tmp_path):
    out = trained.parent
    resumed = run(
        "train",
        "localizer",
        "--epochs",
        "2",
        "--train-images",
        "32",
        "--batch-size",
        "16",
        "--out",
        str(out),
        "--resume",
        cwd=out,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("epoch 2:")
    evaluated = run("eval", str(trained), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "map50" in evaluated.stdout and "loc_acc" in evaluated.stdout

    from PIL import Image

    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    predicted = run("predict", str(trained), "photo.png", "--out", "boxes.png", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "boxes.png").stat().st_size > 0
    assert "wrote boxes.png" in predicted.stdout


def test_demo_writes_checkpoint_pictures_and_metrics(tmp_path):
    result = run(
        "demo",
        "--models",
        "localizer",
        "--epochs",
        "1",
        "--train-images",
        "32",
        "--pictures",
        "2",
        "--out",
        "demo",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    import minivision as mv

    assert result.stdout.startswith(
        f"running on {'the GPU (cuda)' if mv.cuda_available() else 'the CPU'}"
    )
    assert "[localizer] validation on 256 images: map50" in result.stdout
    written = sorted(os.listdir(tmp_path / "demo" / "localizer"))
    assert written == [
        "checkpoint.npz",
        "history.png",
        "metrics.json",
        "prediction_0.png",
        "prediction_1.png",
    ]


def test_demo_device_auto_takes_the_gpu_where_there_is_one(monkeypatch):
    from minivision import cli

    assert cli.build_parser().parse_args(["demo"]).device == "auto"
    for present, expected in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(cli, "cuda_available", lambda: present)
        assert cli.resolve_device("auto") == expected
        assert cli.resolve_device("cpu") == "cpu"


def test_train_and_predict_on_the_gpu(gpu, tmp_path):
    trained = run(
        "train",
        "yolo",
        "--device",
        "cuda",
        "--epochs",
        "1",
        "--train-images",
        "32",
        "--batch-size",
        "16",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert "map50" in trained.stdout
    evaluated = run("eval", "run/checkpoint.npz", "--device", "cuda", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "photo.png"
    )
    predicted = run(
        "predict",
        "run/checkpoint.npz",
        "photo.png",
        "--device",
        "cuda",
        "--out",
        "boxes.png",
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "boxes.png").stat().st_size > 0


def test_demo_unknown_model(tmp_path):
    assert_one_line_error(
        run("demo", "--models", "localizer,resnet", cwd=tmp_path),
        "--models: unknown model 'resnet'",
    )


def test_unknown_model(tmp_path):
    assert_one_line_error(
        run("train", "resnet", "--out", "x", cwd=tmp_path),
        "unknown model 'resnet'; choose one of: ",
    )


def test_bad_data_spec(tmp_path):
    assert_one_line_error(
        run("train", "localizer", "--data", "imagenet", cwd=tmp_path),
        "--data must be shapes, digits",
    )


def test_missing_voc_folder(tmp_path):
    assert_one_line_error(
        run("train", "localizer", "--data", "voc:/nonexistent", cwd=tmp_path), "/nonexistent"
    )


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    assert_one_line_error(
        run("eval", "broken.npz", cwd=tmp_path), "is not a readable minivision .npz file"
    )


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(
        run("predict", "absent.npz", "x.png", cwd=tmp_path), "no file at 'absent.npz'"
    )


def test_plain_weights_are_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "weights.npz", w=np.zeros(3))
    assert_one_line_error(run("eval", "weights.npz", cwd=tmp_path), "not a minivision checkpoint")


def test_unreadable_image(trained, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    assert_one_line_error(
        run("predict", str(trained), "notes.png", cwd=tmp_path), "could not be decoded"
    )
    assert_one_line_error(
        run("predict", str(trained), "absent.png", cwd=tmp_path), "does not exist"
    )


def test_bad_number_is_a_one_line_argparse_error(tmp_path):
    assert_one_line_error(
        run("train", "localizer", "--epochs", "0", cwd=tmp_path),
        "argument --epochs: must be an integer from 1 to 100000, got '0'",
    )


def test_short_demo_beats_the_stated_floor(tmp_path):
    """Four epochs on 512 images (about 10 s) take the tiny YOLO from chance (mAP ~0) to
    0.16 mAP@0.5 here; the floor is 0.1. The full demo (12 epochs, 2,048 images) reaches 0.78."""
    result = run(
        "demo",
        "--models",
        "yolo",
        "--epochs",
        "4",
        "--train-images",
        "512",
        "--pictures",
        "1",
        "--out",
        "demo",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    line = next(text for text in result.stdout.splitlines() if text.startswith("[yolo] validation"))
    map50 = float(line.split("map50 ")[1].split(",")[0])
    assert map50 >= 0.1, line


def test_killed_training_leaves_a_loadable_checkpoint(tmp_path):
    env = subprocess_env()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minivision",
            "train",
            "localizer",
            "--epochs",
            "200",
            "--train-images",
            "32",
            "--batch-size",
            "16",
            "--out",
            "run",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    try:
        for _ in range(600):  # wait until at least one epoch was written
            if checkpoint.exists():
                break
            time.sleep(0.1)
        time.sleep(0.5)  # let it get into the middle of a later epoch or checkpoint write
    finally:
        process.kill()
        process.wait()
    assert checkpoint.exists()
    evaluated = run("eval", str(checkpoint), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr


def test_predict_refuses_an_image_whose_header_is_too_large(trained, tmp_path):
    from tests.data.test_image import png_claiming

    png_claiming(tmp_path / "bomb.png", 60_000, 60_000)
    result = run("predict", str(trained), "bomb.png", "--out", "p.png", cwd=tmp_path)
    assert_one_line_error(result, "60000 x 60000")
    assert "MINIVISION_MAX_IMAGE_PIXELS" in result.stderr and not (tmp_path / "p.png").exists()


def test_predict_draws_a_large_image_reduced_and_prints_boxes_in_its_own_pixels(trained, tmp_path):
    """A 3000 x 2000 photo is drawn at 1024 x 683 but its boxes are in the photo's pixels."""
    from PIL import Image

    Image.new("RGB", (3000, 2000), (200, 30, 30)).save(tmp_path / "photo.png")
    result = run("predict", str(trained), "photo.png", "--out", "boxes.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "boxes.png").size[0] > 0
    boxes = [
        line.split(" at (")[1].rstrip(")").split(", ")
        for line in result.stdout.splitlines()
        if " at (" in line
    ]
    assert boxes
    corners = np.array(boxes, dtype=float)
    assert corners[:, [0, 2]].max() <= 3000 and corners[:, [1, 3]].max() <= 2000
    assert corners[:, [2, 3]].max() > 1024  # in the photo's pixels, not the reduced picture's


def test_ssd_trains_at_its_recipes_size_then_evaluates_and_predicts(tmp_path):
    """`minivision train ssd` takes the recipe's 96 px images; eval and predict read its checkpoint."""
    trained = run(
        "train",
        "ssd",
        "--epochs",
        "1",
        "--train-images",
        "16",
        "--batch-size",
        "8",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    evaluated = run("eval", "run/checkpoint.npz", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "map50" in evaluated.stdout
    from PIL import Image

    Image.fromarray((np.random.default_rng(1).random((120, 90, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "p.png"
    )
    predicted = run("predict", "run/checkpoint.npz", "p.png", "--out", "boxes.png", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "boxes.png").stat().st_size > 0
    from minivision.checkpoint import read_checkpoint

    assert (
        read_checkpoint(tmp_path / "run" / "checkpoint.npz")[2]["meta"]["config"]["image_size"]
        == 96
    )
