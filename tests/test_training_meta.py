"""A checkpoint's record of its run is checked before any model is built from it."""

import numpy as np
import pytest

import minivision as mv
from minivision.checkpoint import save_checkpoint
from minivision.models import MODELS, Localizer
from minivision.training_meta import make_meta
from minivision.workflow import load_trained
from tests.test_cli import assert_one_line_error, run

CLASSES = ["circle", "square", "triangle"]


def write(path, meta_changes=(), meta=None):
    mv.manual_seed(0)
    model = Localizer.tiny(len(CLASSES), 64)
    if meta is None:
        meta = make_meta("localizer", model, "shapes", CLASSES, 1)
        for key, value in dict(meta_changes).items():
            meta[key] = value
    save_checkpoint(path, model, meta=meta)
    return model


def test_a_well_formed_record_loads_the_same_weights(tmp_path):
    model = write(tmp_path / "c.npz")
    loaded, meta = load_trained(tmp_path / "c.npz")
    assert meta["class_names"] == CLASSES
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name].numpy(), value.numpy())


@pytest.mark.parametrize(
    "changes, text",
    [
        ({"model": "resnet"}, f"'model' must be one of {', '.join(sorted(MODELS))}, got 'resnet'"),
        ({"class_names": []}, "'class_names' must be a non-empty list of names, got []"),
        (
            {"class_names": "circle"},
            "'class_names' must be a non-empty list of names, got 'circle'",
        ),
        ({"class_names": ["circle", 7]}, "'class_names' must be a non-empty list of names"),
        ({"class_names": None}, "'class_names' must be a non-empty list of names, got None"),
        ({"data": 3}, "'data' must be a data spec such as 'shapes', got 3"),
        ({"max_objects": 0}, "'max_objects' must be a positive integer, got 0"),
        ({"max_objects": True}, "'max_objects' must be a positive integer, got True"),
        ({"config": [1, 2]}, "'config' must be an object of constructor arguments, got [1, 2]"),
        (
            {"config": {"image_size": "64"}},
            "'config.image_size' must be an integer from 1 to 8192, got '64'",
        ),
        (
            {"config": {"image_size": 10**6}},
            "'config.image_size' must be an integer from 1 to 8192, got 1000000",
        ),
    ],
)
def test_malformed_records_name_the_key(tmp_path, changes, text):
    write(tmp_path / "c.npz", changes)
    with pytest.raises(ValueError) as error:
        load_trained(tmp_path / "c.npz")
    assert f"c.npz: checkpoint meta {text}" in str(error.value)


@pytest.mark.parametrize("meta", [{}, {"config": {}}])
def test_a_record_naming_no_model_is_not_from_train(tmp_path, meta):
    write(tmp_path / "c.npz", meta=meta)
    with pytest.raises(ValueError, match="checkpoint meta 'meta' must be an object naming a model"):
        load_trained(tmp_path / "c.npz")


def test_a_config_that_is_not_the_tiny_one_is_refused_before_loading(tmp_path):
    model = Localizer.tiny(len(CLASSES), 64)
    config = dict(model.config, box_weight=model.config["box_weight"] + 1)
    write(tmp_path / "c.npz", {"config": config})
    with pytest.raises(
        ValueError,
        match=r"'config' is not the tiny localizer configuration for 3 classes at "
        r"image_size 64 \(differs in box_weight\)",
    ):
        load_trained(tmp_path / "c.npz")


def test_class_names_that_do_not_match_the_weights(tmp_path):
    write(tmp_path / "c.npz", {"class_names": CLASSES[:2]})
    with pytest.raises(ValueError, match="differs in num_classes"):
        load_trained(tmp_path / "c.npz")


def test_predict_with_a_malformed_record_is_one_line(tmp_path):
    write(tmp_path / "c.npz", {"class_names": []})
    assert_one_line_error(
        run("predict", "c.npz", "x.png", cwd=tmp_path), "checkpoint meta 'class_names' must be"
    )
