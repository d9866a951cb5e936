"""Each model's recipe reaches its data: the image size and Shapes' object sizes."""

import pytest

from minivision.models import RECIPES
from minivision.workflow import UsageError, plan_training


def test_ssd_trains_on_96_pixel_images_with_objects_of_8_to_48_pixels():
    assert (RECIPES["ssd"].image_size, RECIPES["ssd"].object_sizes) == (96, (1 / 12, 1 / 2))
    options, train_set, val_set = plan_training("ssd", "shapes", train_images=8)
    assert options["image_size"] == 96
    for data in (train_set, val_set):
        assert data.image_size == 96 and data.object_sizes == pytest.approx((8.0, 48.0))


def test_an_image_size_given_scales_the_objects_with_it():
    _, train_set, _ = plan_training("ssd", "shapes", train_images=8, image_size=72)
    assert train_set.image_size == 72 and train_set.object_sizes == pytest.approx((6.0, 36.0))


def test_other_recipes_keep_64_pixels_and_shapes_default_sizes():
    options, train_set, _ = plan_training("yolo", "shapes", train_images=8)
    assert (
        options["image_size"] == 64
        and train_set.image_size == 64
        and train_set.object_sizes is None
    )


def test_an_image_size_out_of_range_is_refused():
    with pytest.raises(UsageError, match="--image-size must be from 1 to 8192, got 0"):
        plan_training("ssd", "shapes", image_size=0)
