"""Paired transforms keep boxes, masks and the semantic map aligned with the image."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision.data import DataLoader, Shapes
from minivision.data.transforms import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    ToTensor,
)
from tests.data.helpers import tight_box

SAMPLE_SEEDS = st.integers(0, 2**31)


def shapes_sample(seed, size=48):
    return Shapes(1, image_size=size, min_objects=1, max_objects=4, seed=seed)[0]


def hand_made_target():
    """A 4x6 image with one 2x3 instance at rows 1-2, columns 0-2 (box (0, 1, 3, 3))."""
    image = np.arange(3 * 4 * 6, dtype=np.float32).reshape(3, 4, 6)
    masks = np.zeros((1, 4, 6), bool)
    masks[0, 1:3, 0:3] = True
    target = {
        "boxes": np.array([[0, 1, 3, 3]], np.float32),
        "labels": np.array([2]),
        "masks": masks,
        "semantic": masks[0].astype(np.int64) * 2,
        "image_id": 0,
    }
    return image, target


def test_flip_moves_a_hand_made_box():
    image, target = hand_made_target()
    flipped, out = RandomHorizontalFlip(p=1.0)(image, target)
    np.testing.assert_array_equal(out["boxes"], [[3, 1, 6, 3]])  # x1' = 6 - 3, x2' = 6 - 0
    np.testing.assert_array_equal(flipped[:, :, 0], image[:, :, 5])
    assert out["masks"][0, 1:3, 3:6].all() and out["masks"].sum() == 6
    np.testing.assert_array_equal(target["boxes"], [[0, 1, 3, 3]])  # input untouched


def test_flip_with_p_zero_is_identity():
    image, target = hand_made_target()
    out_image, out = RandomHorizontalFlip(p=0.0)(image, target)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out["boxes"], target["boxes"])


@given(seed=SAMPLE_SEEDS)
def test_flip_keeps_boxes_tight(seed):
    image, target = RandomHorizontalFlip(p=1.0)(*shapes_sample(seed))
    for box, mask in zip(target["boxes"], target["masks"]):
        np.testing.assert_array_equal(box, tight_box(mask))
    np.testing.assert_array_equal(
        target["semantic"], (target["masks"] * target["labels"][:, None, None]).sum(0)
    )


@given(seed=SAMPLE_SEEDS, out_h=st.integers(48, 112), out_w=st.integers(48, 112))
def test_resize_up_keeps_boxes_on_masks(seed, out_h, out_w):
    """Enlarging samples every input pixel, so each mask edge moves by less than a pixel."""
    image, target = Resize((out_h, out_w))(*shapes_sample(seed, size=48))
    assert image.shape == (3, out_h, out_w) and image.dtype == np.float32
    assert target["masks"].shape[1:] == (out_h, out_w) and target["semantic"].shape == (
        out_h,
        out_w,
    )
    for box, mask in zip(target["boxes"], target["masks"]):
        np.testing.assert_allclose(box, tight_box(mask), atol=1.0)


@given(
    rects=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(4, 8), st.integers(4, 8)),
        min_size=1,
        max_size=3,
    ),
    out_h=st.integers(24, 47),
    out_w=st.integers(24, 47),
)
def test_resize_down_keeps_boxes_on_solid_masks(rects, out_h, out_w):
    """Shrinking at most 2x keeps every solid rectangle of side >= 4, within a pixel.
    (Slivers thinner than the step can be missed by nearest sampling, so shapes are not used.)"""
    masks = np.zeros((len(rects), 48, 48), bool)
    for mask, (top, left, h, w) in zip(masks, rects):
        mask[top : top + h, left : left + w] = True
    boxes = np.array([tight_box(m) for m in masks])
    _, target = Resize((out_h, out_w))(
        np.zeros((3, 48, 48), np.float32), {"boxes": boxes, "masks": masks}
    )
    for box, mask in zip(target["boxes"], target["masks"]):
        np.testing.assert_allclose(box, tight_box(mask), atol=1.0)


def test_resize_scales_a_hand_made_box_and_interpolates_bilinearly():
    image = np.array([[[0.0, 1.0]]], np.float32)  # (1, 1, 2)
    target = {"boxes": np.array([[1, 0, 2, 1]], np.float32)}
    resized, out = Resize((2, 4))(image, target)
    # half-pixel centres: output columns sample x = 0, 0.25, 0.75, 1 of the input (clamped)
    np.testing.assert_allclose(resized[0], [[0, 0.25, 0.75, 1], [0, 0.25, 0.75, 1]])
    np.testing.assert_array_equal(out["boxes"], [[2, 0, 4, 2]])


@given(seed=SAMPLE_SEEDS, crop=st.integers(16, 48), fraction=st.sampled_from([0.0, 0.3, 0.7, 1.0]))
def test_random_crop_keeps_targets_aligned(seed, crop, fraction):
    image, target = shapes_sample(seed)
    cropped, out = RandomCrop(crop, min_area_fraction=fraction, seed=seed)(image, target)
    count = len(out["labels"])
    assert cropped.shape == (3, crop, crop)
    assert out["boxes"].shape == (count, 4) and out["masks"].shape == (count, crop, crop)
    for box, mask in zip(out["boxes"], out["masks"]):
        np.testing.assert_array_equal(box, tight_box(mask))
    # the kept instances are original instances, cut by the same window as the image
    top, left = _find_window(image, cropped)
    window = (slice(top, top + crop), slice(left, left + crop))
    originals = {target["masks"][k][window].tobytes(): k for k in range(len(target["labels"]))}
    for mask, label in zip(out["masks"], out["labels"]):
        assert target["labels"][originals[mask.tobytes()]] == label
    np.testing.assert_array_equal(out["semantic"], target["semantic"][window])


def _find_window(image, cropped):
    h, w = cropped.shape[1:]
    for top in range(image.shape[1] - h + 1):
        for left in range(image.shape[2] - w + 1):
            if np.array_equal(image[:, top : top + h, left : left + w], cropped):
                return top, left
    raise AssertionError("the crop is not a window of the image")


def test_random_crop_drops_boxes_by_remaining_area():
    image = np.zeros((3, 10, 10), np.float32)
    boxes = np.array([[0, 0, 4, 10], [2, 0, 10, 10]], np.float32)  # crop keeps columns 3..9 of both
    target = {"boxes": boxes, "labels": np.array([1, 2]), "difficult": np.array([False, True])}
    crop = RandomCrop((10, 7), min_area_fraction=0.5)
    crop.rng = _FixedOffsets(top=0, left=3)
    _, out = crop(image, target)
    # box 0 keeps 1/4 of its area (dropped), box 1 keeps 7/8 (kept, clipped to the window)
    np.testing.assert_array_equal(out["boxes"], [[0, 0, 7, 10]])
    np.testing.assert_array_equal(out["labels"], [2])
    np.testing.assert_array_equal(out["difficult"], [True])


class _FixedOffsets:
    """Stands in for the crop's generator: returns the given top, then left offset."""

    def __init__(self, top, left):
        self.values = [top, left]

    def integers(self, high):
        value = self.values.pop(0)
        assert value < high
        return value


def test_random_crop_keeps_zero_boxes_shaped():
    image = np.zeros((3, 8, 8), np.float32)
    target = {
        "boxes": np.zeros((0, 4), np.float32),
        "labels": np.zeros(0, np.int64),
        "masks": np.zeros((0, 8, 8), bool),
    }
    _, out = RandomCrop(4, seed=0)(image, target)
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 4, 4)


def test_random_transforms_reproduce_per_seed_and_epoch():
    image, target = shapes_sample(0)

    def run(seed, epoch):
        transform = Compose([RandomHorizontalFlip(0.5, seed=seed), RandomCrop(32, seed=seed)])
        transform.set_epoch(epoch)
        return [transform(image, target)[0] for _ in range(6)]

    assert all(np.array_equal(a, b) for a, b in zip(run(1, 0), run(1, 0)))
    assert not all(np.array_equal(a, b) for a, b in zip(run(1, 0), run(1, 1)))
    assert not all(np.array_equal(a, b) for a, b in zip(run(1, 0), run(2, 0)))


def test_loader_epochs_reseed_dataset_transforms():
    """A loader told set_epoch(1) replays epoch 1 exactly, augmentation included."""

    def epoch_one_batches():
        data = Shapes(6, image_size=32, seed=0, transform=RandomCrop(20, seed=9))
        loader = DataLoader(data, batch_size=3, shuffle=True, seed=4)
        loader.set_epoch(1)
        return [images.numpy() for images, _ in loader]

    def uninterrupted():
        data = Shapes(6, image_size=32, seed=0, transform=RandomCrop(20, seed=9))
        loader = DataLoader(data, batch_size=3, shuffle=True, seed=4)
        list(loader)
        return [images.numpy() for images, _ in loader]

    for resumed, straight in zip(epoch_one_batches(), uninterrupted()):
        np.testing.assert_array_equal(resumed, straight)


def test_normalize_and_to_tensor():
    image = np.stack([np.full((2, 2), v, np.float32) for v in (0.5, 1.0, 0.0)])
    out, target = Compose([Normalize([0.5, 0.5, 0.5], [0.5, 0.25, 1.0]), ToTensor()])(
        image, {"x": 1}
    )
    assert isinstance(out, mv.Tensor) and out.dtype == np.float32 and target == {"x": 1}
    np.testing.assert_allclose(out.numpy()[:, 0, 0], [0.0, 2.0, -0.5])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Resize(0), r"size must be a positive int or a \(height, width\) pair, got 0"),
        (lambda: Resize((4, 4, 4)), r"size must be .* got \(4, 4, 4\)"),
        (lambda: RandomHorizontalFlip(1.5), r"p must be a probability in \[0, 1\], got 1.5"),
        (
            lambda: RandomCrop(4, min_area_fraction=-0.1),
            r"min_area_fraction must be in \[0, 1\], got -0.1",
        ),
        (
            lambda: Normalize([0, 0], [1, 1, 1]),
            "mean and std must have the same length, got 2 and 3",
        ),
        (lambda: Normalize([0], [0]), r"std must be positive, got \[0.0\]"),
    ],
)
def test_bad_transform_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_transform_inputs():
    with pytest.raises(
        ValueError, match=r"RandomCrop size \(16, 16\) is larger than the image \(8, 8\)"
    ):
        RandomCrop(16)(np.zeros((3, 8, 8), np.float32), {})
    with pytest.raises(ValueError, match=r"image must have shape \(C, H, W\), got shape \(8, 8\)"):
        Resize(4)(np.zeros((8, 8), np.float32), {})
    with pytest.raises(ValueError, match="Normalize has 3 channels of mean/std, the image has 1"):
        Normalize([0, 0, 0], [1, 1, 1])(np.zeros((1, 2, 2), np.float32), {})
