"""Every option of the command is range-checked where it is parsed, and every parse error is
one line; options that are given are used, 0 included."""

import contextlib
import io
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivision import cli
from minivision.training_meta import MAX_IMAGE_SIZE
from tests.helpers import subprocess_env
from tests.test_cli import assert_one_line_error, run


def parse_error(argv) -> str:
    """The one line a bad command line prints; exit status 2."""
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(stderr):
        cli.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    lines = stderr.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minivision: error: "), lines
    return lines[0]


# (command line before the value, the option, the smallest and largest value it takes)
INTEGER_OPTIONS = [
    (["train", "yolo"], "--epochs", 1, cli.MAX_EPOCHS),
    (["train", "yolo"], "--batch-size", 1, None),
    (["train", "yolo"], "--train-images", 1, None),
    (["train", "yolo"], "--image-size", 1, MAX_IMAGE_SIZE),
    (["demo"], "--epochs", 1, cli.MAX_EPOCHS),
    (["demo"], "--train-images", 1, None),
    (["demo"], "--pictures", 0, 256),
    (["eval", "c.npz"], "--batch-size", 1, None),
]


@pytest.mark.parametrize("prefix, option, low, high", INTEGER_OPTIONS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_integer_options_reject_out_of_range_values(prefix, option, low, high, data):
    below = st.integers(max_value=low - 1)
    above = st.integers(min_value=high + 1) if high is not None else st.nothing()
    value = data.draw(st.one_of(below, above, st.sampled_from(["1.5", "ten", "", "1e3", "nan"])))
    line = parse_error(
        prefix + [f"{option}={value}"]
    )  # "--x=-1e+16": argparse reads a lone -1e+16 as an option
    assert f"argument {option}: must be an integer" in line and repr(str(value)) in line


@pytest.mark.parametrize("prefix, option, low, high", INTEGER_OPTIONS)
def test_integer_options_take_their_bounds(prefix, option, low, high):
    for value in (low, high if high is not None else 10**12):
        args = cli.build_parser().parse_args(prefix + [option, str(value)])
        assert getattr(args, option[2:].replace("-", "_")) == value


@settings(max_examples=30, deadline=None)
@given(
    value=st.one_of(
        st.floats(max_value=-1e-300),
        st.just(math.inf),
        st.just(math.nan),
        st.sampled_from(["-0.1", "fast", "1e999", "-inf"]),
    )
)
def test_lr_must_be_finite_and_not_negative(value):
    line = parse_error(["train", "yolo", f"--lr={value}"])
    assert "argument --lr: must be a finite number >= 0" in line


@settings(max_examples=20, deadline=None)
@given(value=st.one_of(st.floats(max_value=0), st.sampled_from(["0", "inf", "soon"])))
def test_grading_timeout_must_be_positive(value):
    assert "argument --timeout: must be" in parse_error(
        ["assignment", "grade", "S", f"--timeout={value}"]
    )


@pytest.mark.parametrize(
    "argv, text",
    [
        (["train"], "the following arguments are required: model"),
        (["launch"], "invalid choice: 'launch'"),
        (["train", "yolo", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["predict", "c.npz"], "the following arguments are required: image"),
        (["eval", "c.npz", "--colour"], "unrecognized arguments: --colour"),
        (["assignment", "make", "S"], "the following arguments are required: --include"),
    ],
)
def test_argparse_errors_are_one_line(argv, text):
    assert text in parse_error(argv)


def test_zero_learning_rate_is_used_not_replaced(tmp_path):
    """--lr 0 trains with a rate of 0 (the weights stay as initialised), not the recipe's."""
    import minivision as mv
    from minivision.checkpoint import read_checkpoint
    from minivision.models import Localizer

    result = run(
        "train",
        "localizer",
        "--lr",
        "0",
        "--epochs",
        "1",
        "--train-images",
        "16",
        "--batch-size",
        "16",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    state, _, info = read_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert info["history"][-1]["lr"] == 0
    mv.manual_seed(0)
    initial = Localizer.tiny(3, 64).state_dict()
    for name, value in initial.items():
        if "running" not in name and "num_batches" not in name:  # batch norm's statistics do move
            np.testing.assert_array_equal(state[name].numpy(), value.numpy(), err_msg=name)


def test_coco_spec_naming_a_folder(tmp_path):
    assert_one_line_error(
        run("train", "yolo", "--data", f"coco:{tmp_path}", cwd=tmp_path),
        f"--data coco:PATH must name the annotations .json file (images are read from the "
        f"'images' folder beside it), got '{tmp_path}', which is a folder",
    )


def test_demo_without_matplotlib_stops_before_training(tmp_path):
    """matplotlib hidden from the import system: the demo says how to install it, at once."""
    code = (
        "import sys; sys.modules['matplotlib'] = None; from minivision.cli import main; "
        "sys.exit(main(['demo', '--out', 'demo']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(
        result,
        "minivision demo draws its predictions and training curves with matplotlib, "
        "which is not installed: pip install 'minivision[viz]'",
    )
    assert "training" not in result.stdout and not (tmp_path / "demo").exists()


def test_demo_checks_every_models_plan_before_training_the_first(tmp_path):
    env = dict(
        subprocess_env(), MINIVISION_MEMORY_LIMIT="150M"
    )  # the localizer fits, the U-Net does not
    result = subprocess.run(
        [sys.executable, "-m", "minivision", "demo", "--models", "localizer,unet", "--out", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(
        result, "training unet at --image-size 64 with --batch-size 32 needs about"
    )
    assert "[localizer] training" not in result.stdout and not (tmp_path / "demo").exists()


@pytest.mark.parametrize(
    "options, text",
    [
        (["--image-size", "8192"], "needs at least 25.8 GB (its batch of 32 images 25.8 GB"),
        (["--train-images", "100000000000"], "data index 1.6 TB)"),
        (["--image-size", "1024"], "; --batch-size "),
    ],
)
def test_runs_too_large_for_memory_are_refused_in_one_line(tmp_path, options, text):
    env = dict(subprocess_env(), MINIVISION_MEMORY_LIMIT="16G")
    result = subprocess.run(
        [sys.executable, "-m", "minivision", "train", "yolo", *options, "--out", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(result, text)
    assert (
        "is allowed by MINIVISION_MEMORY_LIMIT" in result.stderr and not (tmp_path / "run").exists()
    )
