"""OverFeat: the paper's layer tables and Table 5, offset pooling and box merging by hand, training a tiny one."""

import numpy as np
import pytest

import minivision as mv
from minivision.models.overfeat import (
    OverFeat,
    interleave_offsets,
    map_sizes,
    match_score,
    merge_boxes,
    offset_max_pool,
    smallest_input,
)

# Table 5 (accurate model, 3x3 offset pooling): input, layer-5 pre-pool, post-pool per
# offset, classifier map per offset ("pre-reshape") and after interleaving.
TABLE_5 = [
    ((245, 245), (17, 17), (5, 5), (1, 1), (3, 3)),
    ((281, 317), (20, 23), (6, 7), (2, 3), (6, 9)),
    ((317, 389), (23, 29), (7, 9), (3, 5), (9, 15)),
    ((389, 461), (29, 35), (9, 11), (5, 7), (15, 21)),
    ((425, 497), (32, 38), (10, 12), (6, 8), (18, 24)),
    ((461, 569), (35, 44), (11, 14), (7, 10), (21, 30)),
]


@pytest.mark.parametrize("size, pre, post, classifier, interleaved", TABLE_5)
def test_accurate_model_matches_table_5(size, pre, post, classifier, interleaved):
    assert tuple(map_sizes("accurate", *size)) == (pre, post, classifier, interleaved)


# The fast model at the same scales (pool5 is 2x2, so offsets {0, 1}^2, classifier window 6):
# 281: conv1 (281 - 11) // 4 + 1 = 68, pool 34, conv2 30, pool 15 = pre-pool; offsets (15 - 1) // 2 = 7; 7 - 5 = 2
# 317: 77, 38, 34, 17; (17 - 1) // 2 = 8; 3.       Interleaved: 2 * (2, 3) = (4, 6)
# 461: 113, 56, 52, 26; (26 - 1) // 2 = 12; 7.     569: 140, 70, 66, 33; 16; 11.  Interleaved (14, 22)
# 245: 59, 29, 25, 12; (12 - 1) // 2 = 5 < 6: too small for dense evaluation (it needs 247)
@pytest.mark.parametrize(
    "size, expected",
    [
        ((281, 317), ((15, 17), (7, 8), (2, 3), (4, 6))),
        ((461, 569), ((26, 33), (12, 16), (7, 11), (14, 22))),
    ],
)
def test_fast_model_at_the_papers_scales(size, expected):
    assert tuple(map_sizes("fast", *size)) == expected


def test_window_sizes_are_the_papers_inputs():
    assert smallest_input("fast") == 231 and smallest_input("accurate") == 221
    assert (
        smallest_input("fast", dense=True) == 247 and smallest_input("accurate", dense=True) == 245
    )


@pytest.mark.slow  # a paper-size forward pass
def test_paper_size_fast_model_gives_1x1_then_a_map():
    model = OverFeat("fast").eval()
    with mv.no_grad():
        scores, boxes = model(mv.zeros(1, 3, 231, 231))
        assert scores.shape == (1, 1000, 1, 1) and boxes.shape == (1, 4000, 1, 1)
        scores, _ = model.dense(mv.zeros(1, 3, 281, 317))
    assert scores.shape == (1, 1000, 4, 6)


def test_tiny_forward_sizes_follow_map_sizes():
    model = OverFeat.tiny(3, 64).eval()
    for size in [(40, 40), (64, 64), (72, 96)]:
        sizes = map_sizes("tiny", *size)
        with mv.no_grad():
            scores, boxes = model.dense(mv.zeros(1, 3, *size))
        assert (
            scores.shape == (1, 3) + sizes.interleaved
            and boxes.shape == (1, 12) + sizes.interleaved
        )


def test_offset_pooling_by_hand():
    # x[r, c] = 5r + c on 5x5, 2x2 pools: offset (dy, dx) gives window maxima x[2i+dy+1, 2j+dx+1]
    # (each window's bottom-right), so the interleaved map is x[r + 1, c + 1] for r, c < 4.
    x = mv.tensor(np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5))
    pooled = offset_max_pool(x, 2)
    assert pooled.shape == (4, 1, 2, 2)
    np.testing.assert_array_equal(pooled.numpy()[1, 0], [[7, 9], [17, 19]])  # offset (0, 1)
    np.testing.assert_array_equal(
        interleave_offsets(pooled, 2).numpy()[0, 0],
        [[6, 7, 8, 9], [11, 12, 13, 14], [16, 17, 18, 19], [21, 22, 23, 24]],
    )
    # the paper's 3x3 pools: one window per offset, maximum x[dy + 2, dx + 2] = 5 dy + dx + 12
    np.testing.assert_array_equal(
        interleave_offsets(offset_max_pool(x, 3), 3).numpy()[0, 0],
        [[12, 13, 14], [17, 18, 19], [22, 23, 24]],
    )


def test_offset_pooling_too_small():
    with pytest.raises(ValueError, match="at least 5x5"):
        offset_max_pool(mv.zeros(1, 1, 4, 9), 3)


def test_match_score_by_hand():
    a, b = np.array([0, 0, 2, 2.0]), np.array([1, 0, 3, 2.0])
    assert match_score(a, a) == 0
    # centres 1 apart, / sqrt(area 4) = 0.5; intersection 2 of area 4: 1 - 0.5 = 0.5
    assert match_score(a, b) == pytest.approx(1.0)


def test_merge_boxes_by_hand():
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [10, 10, 12, 12]], dtype=float)
    scores = np.array([0.5, 0.25, 0.5])
    # the first two match at 1.0: merged into their average [0.5, 0, 2.5, 2], scores summed
    merged, summed = merge_boxes(boxes, scores, threshold=1.2)
    np.testing.assert_allclose(merged, [[0.5, 0, 2.5, 2], [10, 10, 12, 12]])
    np.testing.assert_allclose(summed, [0.75, 0.5])
    # below 1.0 nothing merges; the boxes come back by decreasing score (ties keep their order)
    merged, summed = merge_boxes(boxes, scores, threshold=0.9)
    np.testing.assert_allclose(merged, boxes[[0, 2, 1]])


def test_merge_boxes_merges_greedily_pair_by_pair():
    # equal boxes match at 0 and merge first (score 2); the result and [2, 0, 6, 4] have centres
    # 2 apart (/ 4 = 0.5) and share half their area (0.5): 1.0, merged into [1, 0, 5, 4]
    boxes = np.array([[0, 0, 4, 4], [2, 0, 6, 4], [0, 0, 4, 4]], dtype=float)
    merged, summed = merge_boxes(boxes, np.ones(3), threshold=1.0)
    np.testing.assert_allclose(merged, [[1, 0, 5, 4]])
    np.testing.assert_allclose(summed, [3])


def test_predict_one_box_per_image():
    model = OverFeat.tiny(3, 64).eval()
    results = model.predict(mv.rand(2, 3, 64, 64), scales=(1.0, 1.25))
    assert len(results) == 2
    for result in results:
        assert result["boxes"].shape == (1, 4) and result["labels"][0] in (1, 2, 3)


def test_bad_inputs():
    model = OverFeat.tiny(3, 64)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(1, 1, 64, 64\)"):
        model(mv.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="at least 32x32"):
        model(mv.zeros(1, 3, 24, 64))
    with pytest.raises(ValueError, match="at least 40x40"):
        model.dense(mv.zeros(1, 3, 36, 36))
    with pytest.raises(ValueError, match="variant"):
        OverFeat("huge")
