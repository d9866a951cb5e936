"""DefaultBoxes: SSD300's count and layout, its first and last boxes worked out by hand, the
grid and the transposed pairs as properties, clipping, the released code's normalized
(cx, cy, w, h) layout, devices and bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivision as mv
from minivision.ops import DefaultBoxes

SQRT2 = math.sqrt(2.0)
SSD300_COUNTS = [4, 6, 6, 6, 4, 4]


def _rows(expected):
    """Hand-derived float64 corners, rounded once to float32 as the boxes are."""
    return np.array(expected, dtype=np.float64).astype(np.float32)


def _levels(generator, boxes):
    """Split (P, 4) boxes into one (H, W, B, 4) block per level."""
    out, start = [], 0
    for (h, w), b in zip(generator.feature_maps, generator.num_boxes_per_location()):
        out.append(boxes[start : start + h * w * b].reshape(h, w, b, 4))
        start += h * w * b
    assert start == len(boxes)
    return out


def test_ssd300_has_8732_boxes():
    # 38^2 * 4 + 19^2 * 6 + 10^2 * 6 + 5^2 * 6 + 3^2 * 4 + 1^2 * 4 = 5776 + 2166 + 600 + 150 + 36 + 4
    generator = DefaultBoxes.ssd300()
    boxes = generator.boxes()
    assert generator.num_boxes_per_location() == SSD300_COUNTS
    assert len(generator) == 8732 and boxes.shape == (8732, 4) and boxes.dtype == np.float32
    np.testing.assert_array_equal(generator(), boxes)


def test_ssd300_first_position_by_hand():
    """Map 38, step 8, position (0, 0): centre ((0 + 0.5) * 8, (0 + 0.5) * 8) = (4, 4)."""
    extra = math.sqrt(30 * 60)  # sqrt(1800) = 42.4264..., the extra square's side
    wide, high = 30 * SQRT2, 30 / SQRT2  # ratio 2: 42.4264... x 21.2132...
    expected = _rows(
        [
            [4 - 15, 4 - 15, 4 + 15, 4 + 15],  # 30 x 30: (-11, -11, 19, 19)
            [
                4 - extra / 2,
                4 - extra / 2,
                4 + extra / 2,
                4 + extra / 2,
            ],  # (-17.2132, ..., 25.2132)
            [
                4 - wide / 2,
                4 - high / 2,
                4 + wide / 2,
                4 + high / 2,
            ],  # (-17.2132, -6.6066, 25.2132, 14.6066)
            [4 - high / 2, 4 - wide / 2, 4 + high / 2, 4 + wide / 2],  # its transpose
        ]
    )
    boxes = DefaultBoxes.ssd300().boxes()
    np.testing.assert_array_equal(boxes[:4], expected)
    np.testing.assert_array_equal(boxes[0], [-11, -11, 19, 19])
    # position (0, 1) is one step to the right: centre (12, 4)
    np.testing.assert_array_equal(boxes[4], [12 - 15, -11, 12 + 15, 19])


def test_ssd300_first_box_of_each_level_by_hand():
    """Level k starts after the boxes of the levels before it; its position (0, 0) is centred on
    (step / 2, step / 2) and its first box is the min_size square."""
    # 38^2 * 4 = 5776, + 19^2 * 6 = 7942, + 10^2 * 6 = 8542, + 5^2 * 6 = 8692, + 3^2 * 4 = 8728
    starts = [0, 5776, 7942, 8542, 8692, 8728]
    expected = [
        [4 - 15, 4 - 15, 4 + 15, 4 + 15],  # step 8, min 30
        [8 - 30, 8 - 30, 8 + 30, 8 + 30],  # step 16, min 60
        [16 - 55.5, 16 - 55.5, 16 + 55.5, 16 + 55.5],  # step 32, min 111
        [32 - 81, 32 - 81, 32 + 81, 32 + 81],  # step 64, min 162
        [50 - 106.5, 50 - 106.5, 50 + 106.5, 50 + 106.5],  # step 100, min 213
        [150 - 132, 150 - 132, 150 + 132, 150 + 132],  # step 300, min 264
    ]
    boxes = DefaultBoxes.ssd300().boxes()
    np.testing.assert_array_equal(boxes[starts], _rows(expected))


def test_ssd300_last_position_by_hand():
    """Map 1, step 300: the single position is centred on (0.5 * 300, 0.5 * 300) = (150, 150)."""
    extra = math.sqrt(264 * 315)  # sqrt(83160) = 288.3748...
    wide, high = 264 * SQRT2, 264 / SQRT2  # 373.3524... x 186.6762...
    expected = _rows(
        [
            [150 - 132, 150 - 132, 150 + 132, 150 + 132],  # 264 x 264: (18, 18, 282, 282)
            [
                150 - extra / 2,
                150 - extra / 2,
                150 + extra / 2,
                150 + extra / 2,
            ],  # (5.8126, ..., 294.1874)
            [
                150 - wide / 2,
                150 - high / 2,
                150 + wide / 2,
                150 + high / 2,
            ],  # (-36.6762, 56.6619, 336.6762, 243.3381)
            [150 - high / 2, 150 - wide / 2, 150 + high / 2, 150 + wide / 2],  # its transpose
        ]
    )
    np.testing.assert_array_equal(DefaultBoxes.ssd300().boxes()[-4:], expected)


def _check_layout(generator):
    """Every box is centred on its map's grid, every position holds the same boxes, the
    squares are square, and each ratio's box is followed by its transpose of the same area."""
    boxes = generator.boxes().astype(np.float64)
    tolerance = np.finfo(np.float32).eps * max(1.0, np.abs(boxes).max())
    for level in range(len(generator.feature_maps)):
        block = _levels(generator, boxes)[level]
        (h, w), (step_h, step_w) = generator.feature_maps[level], generator.steps[level]
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        centres = (block[..., :2] + block[..., 2:]) / 2
        expected = np.stack([(cols + 0.5) * step_w, (rows + 0.5) * step_h], axis=-1)[:, :, None]
        np.testing.assert_allclose(
            centres, np.broadcast_to(expected, centres.shape), rtol=0, atol=tolerance
        )
        sizes = block[..., 2:] - block[..., :2]  # (H, W, B, 2) widths, heights
        np.testing.assert_allclose(
            sizes, np.broadcast_to(sizes[:1, :1], sizes.shape), rtol=0, atol=2 * tolerance
        )
        low, high = generator.min_sizes[level], generator.max_sizes[level]
        first = sizes[0, 0]
        np.testing.assert_allclose(first[:2], [[low, low], [math.sqrt(low * high)] * 2], rtol=1e-6)
        # a side is a difference of two float32 corners, each off by up to ``tolerance``: relative
        # error up to 2 * tolerance / side, doubled for a product or a quotient of two sides
        size_rtol = max(1e-6, 4 * tolerance / first.min())
        np.testing.assert_allclose(
            first[2::2], first[3::2, ::-1], rtol=size_rtol
        )  # transposed pairs
        np.testing.assert_allclose(
            first[2:].prod(axis=1), low * low, rtol=size_rtol
        )  # area of the min square
        level_ratios = generator.aspect_ratios[level]
        ratios = np.repeat(level_ratios, 2) ** np.tile(
            [1.0, -1.0], len(level_ratios)
        )  # r, 1 / r for each r
        np.testing.assert_allclose(
            first[2:, 0] / first[2:, 1], ratios, rtol=size_rtol
        )  # width / height


def test_ssd300_boxes_sit_on_their_grids():
    _check_layout(DefaultBoxes.ssd300())


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_configurations_sit_on_their_grids(data):
    levels = data.draw(st.integers(1, 3))
    sizes = st.floats(1, 200)
    ratio = st.floats(0.2, 5).filter(lambda r: r != 1)
    maps = [data.draw(st.tuples(st.integers(1, 6), st.integers(1, 6))) for _ in range(levels)]
    steps = [data.draw(st.tuples(st.floats(1, 60), st.floats(1, 60))) for _ in range(levels)]
    lows = [data.draw(sizes) for _ in range(levels)]
    highs = [low + data.draw(st.floats(0.5, 100)) for low in lows]
    ratios = [data.draw(st.lists(ratio, max_size=3)) for _ in range(levels)]
    generator = DefaultBoxes(
        (data.draw(st.integers(1, 400)), data.draw(st.integers(1, 400))),
        maps,
        steps,
        lows,
        highs,
        ratios,
    )
    assert generator.num_boxes_per_location() == [2 + 2 * len(r) for r in ratios]
    assert (
        len(generator.boxes())
        == len(generator)
        == sum(h * w * (2 + 2 * len(r)) for (h, w), r in zip(maps, ratios))
    )
    _check_layout(generator)


def test_clip_keeps_boxes_inside_the_image():
    clipped = DefaultBoxes.ssd300(clip=True).boxes()
    assert clipped.min() == 0 and clipped.max() == 300
    np.testing.assert_array_equal(clipped, np.clip(DefaultBoxes.ssd300().boxes(), 0, 300))
    np.testing.assert_array_equal(
        clipped[0], [0, 0, 19, 19]
    )  # (-11, -11, 19, 19) cut at the image's corner
    # image 100 high, 200 wide, a 1 x 2 map with step 100: centres (50, 50) and (150, 50); squares of
    # 150 and sqrt(150 * 160) = 154.919..., so x is cut at 0 or 200 and y at 0 and 100
    half_extra = math.sqrt(150 * 160) / 2
    wide = DefaultBoxes((100, 200), [(1, 2)], [100], [150], [160], [[]], clip=True).boxes()
    np.testing.assert_array_equal(
        wide,
        _rows(
            [
                [0, 0, 50 + 75, 100],
                [0, 0, 50 + half_extra, 100],
                [150 - 75, 0, 200, 100],
                [150 - half_extra, 0, 200, 100],
            ]
        ),
    )


def _released_layout(image, maps, steps, min_sizes, max_sizes, aspect_ratios):
    """The released PyTorch port's priors, restated as a loop: per map, position (i, j) row-major,
    centres (j + 0.5) / (image / step), sizes divided by the image, as (cx, cy, w, h)."""
    rows = []
    for f, step, low, high, ratios in zip(maps, steps, min_sizes, max_sizes, aspect_ratios):
        cells = image / step
        for i in range(f):
            for j in range(f):
                cx, cy, s = (j + 0.5) / cells, (i + 0.5) / cells, low / image
                extra = math.sqrt(s * high / image)
                rows += [[cx, cy, s, s], [cx, cy, extra, extra]]
                for r in ratios:
                    rows += [
                        [cx, cy, s * math.sqrt(r), s / math.sqrt(r)],
                        [cx, cy, s / math.sqrt(r), s * math.sqrt(r)],
                    ]
    return np.array(rows)


def test_normalized_is_the_released_codes_layout():
    expected = _released_layout(
        300,
        (38, 19, 10, 5, 3, 1),
        (8, 16, 32, 64, 100, 300),
        (30, 60, 111, 162, 213, 264),
        (60, 111, 162, 213, 264, 315),
        ([2], [2, 3], [2, 3], [2, 3], [2], [2]),
    )
    normalized = DefaultBoxes.ssd300().normalized()
    assert normalized.shape == (8732, 4) and normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, expected, rtol=1e-6, atol=1e-7)
    # hand check: the first box is (4 / 300, 4 / 300, 30 / 300, 30 / 300)
    np.testing.assert_allclose(normalized[0], [4 / 300, 4 / 300, 0.1, 0.1], rtol=1e-7)


def test_normalized_divides_each_axis_by_its_own_size():
    """Image 100 high, 200 wide; one 1 x 2 map with step 100: centres (50, 50) and (150, 50)."""
    normalized = DefaultBoxes((100, 200), [(1, 2)], [100], [40], [90], [[]]).normalized()
    # sqrt(40 * 90) = 60
    np.testing.assert_allclose(
        normalized,
        [
            [0.25, 0.5, 0.2, 0.4],
            [0.25, 0.5, 0.3, 0.6],
            [0.75, 0.5, 0.2, 0.4],
            [0.75, 0.5, 0.3, 0.6],
        ],
        rtol=1e-7,
    )


def test_boxes_on_a_device(device):
    generator = DefaultBoxes.ssd300()
    for array in (generator.boxes(device=device), generator.normalized(device=device)):
        assert mv.backend.device_of(array) == device and array.dtype == np.float32
    np.testing.assert_array_equal(
        mv.backend.to_numpy(generator.boxes(device=device)), generator.boxes()
    )


def test_repr_names_the_configuration():
    text = repr(DefaultBoxes((100, 200), [(1, 2)], [100], [40], [90], [[2]], clip=True))
    assert text == (
        "DefaultBoxes(image_size=(100, 200), feature_maps=((1, 2),), steps=((100.0, 100.0),), "
        "min_sizes=(40.0,), max_sizes=(90.0,), aspect_ratios=((2.0,),), clip=True)"
    )


GOOD = dict(
    image_size=300,
    feature_maps=[38, 19],
    steps=[8, 16],
    min_sizes=[30, 60],
    max_sizes=[60, 111],
    aspect_ratios=[[2], [2, 3]],
)


@pytest.mark.parametrize(
    "change,error,message",
    [
        (
            dict(image_size=0),
            ValueError,
            r"image_size must be one or two ints > 0 as \(height, width\), got 0",
        ),
        (
            dict(image_size=(300, 300, 3)),
            ValueError,
            r"image_size must be one or two ints .* got \(300, 300, 3\)",
        ),
        (
            dict(feature_maps=[]),
            ValueError,
            r"feature_maps must be a non-empty sequence of \(H, W\) map sizes, got \[\]",
        ),
        (
            dict(feature_maps=[38, 1.5]),
            ValueError,
            r"feature_maps\[1\] must be one or two ints > 0 .* got 1.5",
        ),
        (
            dict(steps=[8]),
            ValueError,
            r"steps must be a sequence with one entry per feature map \(2\), got \[8\]",
        ),
        (dict(steps=[8, -16]), ValueError, r"steps\[1\] must be one or two numbers > 0 .* got -16"),
        (
            dict(min_sizes=[30, 60, 90]),
            ValueError,
            r"min_sizes must be a sequence with one entry per feature map \(2\)",
        ),
        (
            dict(min_sizes=[30, 0]),
            ValueError,
            r"min_sizes must be .* finite numbers > 0, got \(30, 0\)",
        ),
        (
            dict(max_sizes=[60, float("inf")]),
            ValueError,
            r"max_sizes must be .* finite numbers > 0, got \(60, inf\)",
        ),
        (
            dict(max_sizes=[60, 60]),
            ValueError,
            r"max_sizes\[1\] must be > min_sizes\[1\] \(60\), got 60",
        ),
        (
            dict(max_sizes=None),
            ValueError,
            r"max_sizes must be a sequence with one entry per feature map \(2\), got None",
        ),
        (
            dict(aspect_ratios=[2, 3]),
            ValueError,
            r"aspect_ratios\[0\] must be a sequence \(possibly empty\) of .* got 2",
        ),
        (
            dict(aspect_ratios=[[2], [-3]]),
            ValueError,
            r"aspect_ratios\[1\] must be a sequence .* got \[-3\]",
        ),
        (
            dict(aspect_ratios=[[2], [1, 3]]),
            ValueError,
            r"aspect_ratios\[1\] must not contain 1 .*, got \[1, 3\]",
        ),
        (dict(clip="yes"), TypeError, r"clip must be a bool, got 'yes'"),
    ],
)
def test_bad_input_is_named(change, error, message):
    with pytest.raises(error, match=message):
        DefaultBoxes(**{**GOOD, **change})


def test_a_level_without_ratios_has_the_two_squares():
    generator = DefaultBoxes(**{**GOOD, "aspect_ratios": [[], [2]]})
    assert generator.num_boxes_per_location() == [2, 4]
    _check_layout(generator)
