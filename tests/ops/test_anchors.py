"""AnchorGenerator: the base anchors' sizes and ratios, their placement on the grid, the count
for a VGG16 map of a 600 x 1000 image, py-faster-rcnn's and torchvision's anchors, bad input."""

import math

import numpy as np
import pytest

import minivision as mv
import minivision.functional as F
from minivision.ops.anchors import AnchorGenerator

SQRT2 = math.sqrt(2.0)

# py-faster-rcnn's generate_anchors() (base 16, ratios 0.5, 1, 2, scales 8, 16, 32): inclusive
# integer corners centred on pixel 7.5, ratio-major as ours.
PY_FASTER_RCNN = np.array(
    [
        [-84, -40, 99, 55],
        [-176, -88, 191, 103],
        [-360, -184, 375, 199],
        [-56, -56, 71, 71],
        [-120, -120, 135, 135],
        [-248, -248, 263, 263],
        [-36, -80, 51, 95],
        [-80, -168, 95, 183],
        [-168, -344, 183, 359],
    ],
    dtype=np.float64,
)


def _widths_heights(anchors):
    return anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]


def assert_centres(anchors, expected_xy):
    """The (..., 4) float32 anchors' centres equal ``expected_xy`` (..., 2) up to the rounding of
    their corners to float32 (the corners of irrational sizes are not exact)."""
    anchors = anchors.astype(np.float64)
    centres = (anchors[..., :2] + anchors[..., 2:]) / 2
    tolerance = np.finfo(np.float32).eps * np.abs(anchors).max()
    np.testing.assert_allclose(
        centres, np.broadcast_to(expected_xy, centres.shape), rtol=0, atol=tolerance
    )


def test_default_base_anchors_by_hand():
    """Ratio-major; h = s * sqrt(r), w = s / sqrt(r); centred on 0, not rounded."""
    cell = AnchorGenerator().cell_anchors[0]
    widths, heights = _widths_heights(cell)
    s = np.array([128.0, 256.0, 512.0])
    np.testing.assert_allclose(widths, np.concatenate([s * SQRT2, s, s / SQRT2]), rtol=1e-15)
    np.testing.assert_allclose(heights, np.concatenate([s / SQRT2, s, s * SQRT2]), rtol=1e-15)
    np.testing.assert_allclose(heights / widths, np.repeat([0.5, 1.0, 2.0], 3), rtol=1e-15)
    np.testing.assert_allclose(widths * heights, np.tile(s**2, 3), rtol=1e-15)
    np.testing.assert_array_equal(cell[:, :2], -cell[:, 2:])  # centred on (0, 0)
    np.testing.assert_array_equal(
        cell[3:6], [[-64, -64, 64, 64], [-128, -128, 128, 128], [-256, -256, 256, 256]]
    )
    np.testing.assert_allclose(
        cell[0], [-64 * SQRT2, -32 * SQRT2, 64 * SQRT2, 32 * SQRT2], rtol=1e-15
    )
    assert AnchorGenerator().num_anchors_per_location() == [9]


def test_py_faster_rcnn_anchors_are_ours_moved_to_the_cell_centre_with_rounded_sizes():
    """As continuous boxes (x2 + 1, y2 + 1) the original anchors sit on (8, 8), the centre of the
    first 16 x 16 cell, where ours sit on (0, 0); their sizes are ours rounded at 16 pixels
    (23 x 12, 16 x 16, 11 x 22) and scaled, so the squares agree exactly and the rest within
    that rounding (half a pixel at 16 pixels on the width, one and a half on the height)."""
    original = PY_FASTER_RCNN + [0, 0, 1, 1]
    ours = AnchorGenerator().cell_anchors[0]
    np.testing.assert_array_equal((original[:, :2] + original[:, 2:]) / 2, 8.0)
    np.testing.assert_array_equal(original[3:6], ours[3:6] + 8.0)
    (w, h), (our_w, our_h) = _widths_heights(original), _widths_heights(ours)
    np.testing.assert_array_equal(
        w[:3] / [8, 16, 32], 23
    )  # the ratio-0.5 box at 16 pixels is 23 x 12
    np.testing.assert_array_equal(h[:3] / [8, 16, 32], 12)
    scale = np.tile([8.0, 16.0, 32.0], 3)
    assert np.all(np.abs(w - our_w) <= 0.5 * scale) and np.all(np.abs(h - our_h) <= 1.5 * scale)
    assert np.any(w != our_w)


def test_grid_anchors_are_the_cell_anchors_moved_to_each_position():
    """Position (i, j) centres its anchors on (j * sw, i * sh); order: row-major positions, then anchors."""
    generator = AnchorGenerator(sizes=((32, 64),), aspect_ratios=((1.0, 2.0),))
    (anchors,) = generator.grid_anchors([(3, 5)], [(8, 10)])
    assert anchors.shape == (3 * 5 * 4, 4) and anchors.dtype == np.float32
    grid = anchors.reshape(3, 5, 4, 4)
    rows, cols = np.meshgrid(np.arange(3), np.arange(5), indexing="ij")
    assert_centres(
        grid, np.repeat(np.stack([cols * 10.0, rows * 8.0], axis=-1)[:, :, None], 4, axis=2)
    )
    np.testing.assert_allclose(grid[2, 4], generator.cell_anchors[0] + [40, 16, 40, 16], rtol=1e-7)
    np.testing.assert_array_equal(grid[0, 1, 0], [-6.0, -16.0, 26.0, 16.0])  # 32 x 32 at (10, 0)


def test_a_600_by_1000_image_through_vgg16():
    """VGG16's 3x3 convolutions keep the size and its four 2x2 poolings halve it before conv5_3:
    with floor pooling (torch's and minivision's default) 600 x 1000 -> 37 x 62, 20646 anchors
    at stride 16; with Caffe's ceil pooling (py-faster-rcnn) 38 x 63, 21546 anchors."""
    shapes = {}
    for ceil_mode in (False, True):
        x = mv.Tensor(np.zeros((1, 1, 600, 1000), dtype=np.float32))
        for _ in range(4):
            x = F.max_pool2d(x, 2, ceil_mode=ceil_mode)
        shapes[ceil_mode] = x.shape[2:]
    assert shapes == {False: (37, 62), True: (38, 63)}
    generator = AnchorGenerator()
    floor = generator((600, 1000), [shapes[False]])
    assert floor.shape == (20646, 4)
    assert_centres(floor[-9:], [61 * 16, 36 * 16])
    (ceil,) = generator.grid_anchors([shapes[True]], [16])
    assert ceil.shape == (21546, 4)
    assert_centres(ceil[-9:], [62 * 16, 37 * 16])
    # torchvision's stride rule, image // map, gives 15 for the rounded-up map
    np.testing.assert_array_equal(
        generator((600, 1000), [shapes[True]]), generator.grid_anchors([(38, 63)], [15])[0]
    )


def test_levels_are_concatenated_in_order():
    """A flat ``sizes`` is one size per level and a flat ``aspect_ratios`` serves every level
    (torchvision's rule); maps given as arrays are read by their last two axes."""
    generator = AnchorGenerator(sizes=(32, 64), aspect_ratios=(0.5, 1.0))
    assert generator.sizes == ((32.0,), (64.0,)) and generator.aspect_ratios == (
        (0.5, 1.0),
        (0.5, 1.0),
    )
    assert generator.num_anchors_per_location() == [2, 2]
    anchors = generator(np.zeros((1, 3, 64, 64)), [np.zeros((1, 8, 8, 8)), np.zeros((1, 8, 4, 4))])
    fine, coarse = generator.grid_anchors([(8, 8), (4, 4)], [8, 16])
    np.testing.assert_array_equal(anchors, np.concatenate([fine, coarse]))
    assert anchors.shape == (8 * 8 * 2 + 4 * 4 * 2, 4)
    _, heights = _widths_heights(coarse[:2])
    np.testing.assert_allclose(heights, [64 / SQRT2, 64], rtol=1e-6)


def test_anchors_follow_the_feature_maps_kind_and_device(device):
    maps = [mv.tensor(np.zeros((1, 4, 5, 6)), device=device)]
    anchors = AnchorGenerator()((80, 96), maps)
    assert (
        isinstance(anchors, mv.Tensor) and anchors.device == device and anchors.dtype == np.float32
    )
    np.testing.assert_array_equal(
        anchors.numpy(), AnchorGenerator().grid_anchors([(5, 6)], [16])[0]
    )
    (on_device,) = AnchorGenerator().grid_anchors([(5, 6)], [16], device=device)
    assert mv.backend.device_of(on_device) == device


def test_torchvision_parity_but_for_its_rounding():
    """torchvision rounds its anchors centred on 0; everything else agrees."""
    torch = pytest.importorskip("torch")
    anchor_utils = pytest.importorskip("torchvision.models.detection.anchor_utils")
    from torchvision.models.detection.image_list import ImageList

    sizes, ratios = ((32, 64), (128,)), ((0.5, 1.0, 2.0), (0.7, 1.3))
    theirs = anchor_utils.AnchorGenerator(sizes, ratios)
    images = ImageList(torch.zeros(1, 3, 96, 128), [(96, 128)])
    maps = [torch.zeros(1, 4, 12, 16), torch.zeros(1, 4, 6, 8)]
    expected = theirs(images, maps)[0].numpy()
    ours = AnchorGenerator(sizes, ratios)
    np.testing.assert_allclose(
        np.concatenate([np.round(c) for c in ours.cell_anchors]),
        np.concatenate([c.numpy() for c in theirs.cell_anchors]),
        rtol=0,
        atol=0,
    )
    rounded = AnchorGenerator(sizes, ratios)
    rounded.cell_anchors = [np.round(c) for c in rounded.cell_anchors]
    np.testing.assert_array_equal(rounded((96, 128), [(12, 16), (6, 8)]), expected)
    assert np.abs(ours((96, 128), [(12, 16), (6, 8)]) - expected).max() <= 0.5


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            dict(sizes=((128, 0),)),
            r"sizes\[0\] must be a non-empty sequence of finite numbers > 0, got \(128, 0\)",
        ),
        (
            dict(sizes=((),)),
            r"sizes\[0\] must be a non-empty sequence of finite numbers > 0, got \(\)",
        ),
        (
            dict(sizes=()),
            r"sizes must be a non-empty sequence \(one entry per feature-map level\), got \(\)",
        ),
        (
            dict(aspect_ratios=((0.5, -1.0),)),
            r"aspect_ratios\[0\] must be .* > 0, got \(0.5, -1.0\)",
        ),
        (
            dict(aspect_ratios=((1.0, float("nan")),)),
            r"aspect_ratios\[0\] must be .*finite.*, got \(1.0, nan\)",
        ),
        (
            dict(sizes=((32,), (64,)), aspect_ratios=((1.0,),) * 3),
            "sizes and aspect_ratios must have one entry per feature-map level, got 2 and 3",
        ),
    ],
)
def test_bad_generator_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AnchorGenerator(**kwargs)


def test_bad_grid_arguments():
    generator = AnchorGenerator()
    with pytest.raises(
        ValueError,
        match=r"grid_sizes must have one entry per feature-map level \(1\), "
        r"got \[\(2, 2\), \(1, 1\)\]",
    ):
        generator.grid_anchors([(2, 2), (1, 1)], [16])
    with pytest.raises(
        ValueError, match=r"strides must have one entry per feature-map level \(1\), got 16"
    ):
        generator.grid_anchors([(2, 2)], 16)
    with pytest.raises(
        ValueError, match=r"strides\[0\] must be one or two numbers > 0 .*, got \(16, 0\)"
    ):
        generator.grid_anchors([(2, 2)], [(16, 0)])
    with pytest.raises(
        ValueError, match=r"grid_sizes\[0\] must be one or two ints > 0 .*, got \(2.5, 2\)"
    ):
        generator.grid_anchors([(2.5, 2)], [16])
    with pytest.raises(
        ValueError, match=r"feature_maps\[0\] \(40x10\) must not be larger than the image \(32x32\)"
    ):
        generator((32, 32), [(40, 10)])
    with pytest.raises(
        ValueError,
        match=r"feature_maps\[0\] must be an \(H, W\) pair .* got an array of shape \(5,\)",
    ):
        generator((32, 32), [np.zeros(5)])
    with pytest.raises(
        ValueError, match=r"image_size must be one or two ints > 0 .*, got \(0, 32\)"
    ):
        generator((0, 32), [(2, 2)])
    message = r"feature_maps must be a list with one map or \(H, W\) per level \(1\), got "
    with pytest.raises(ValueError, match=message + "ndarray"):
        generator((32, 32), np.zeros((1, 4, 2, 2)))
    with pytest.raises(ValueError, match=message + "2"):
        generator((32, 32), [(2, 2), (1, 1)])
