"""YOLO v1: the paper's shapes, its loss on hand-worked targets, decoding, training a tiny one."""

import numpy as np
import pytest

import minivision as mv
from minivision.backend import to_numpy
from minivision.models.yolo import (
    FAST,
    FULL,
    YOLOv1,
    decode,
    encode_targets,
    predicted_corners,
    responsible_predictors,
    yolo_loss,
)
from minivision.ops import box_iou
from tests.models.common import shapes_batch

# S=2, B=2, C=2 on a 4x4 image: cells are 2x2 pixels. Channels per cell:
# (x, y, w, h, conf) of predictor 0, the same of predictor 1, then Pr(class 1), Pr(class 2).
TRUTH = {"boxes": np.array([[0.0, 0.0, 2.0, 2.0]], np.float32), "labels": np.array([1])}
# the truth in the paper's units: cell (0, 0), x = y = 0.5 (centre (1, 1)), w = h = 2/4 = 0.5


def grid(cells: dict) -> np.ndarray:
    """A (2, 2, 12) output, zeros except the given cells."""
    out = np.zeros((2, 2, 12))
    for (i, j), values in cells.items():
        out[i, j] = values
    return out


# Image A. Cell (0, 0): predictor 0 is the truth itself (IoU 1, confidence 0.8); predictor 1
# is a 1x1-pixel box at the same centre (IoU 1/4, confidence 0.6); classes (0.75, 0.25).
# Other cells: confidences 0.2 and 0.4 (cells (0, 1) and (1, 1)), the rest 0.
#   coordinates and sizes of the responsible predictor 0: exact, 0
#   confidence of predictor 0, target its IoU 1:            (0.8 - 1)^2 = 0.04
#   no-object predictors: 0.5 * (0.6^2 + 0.2^2 + 0.4^2) = 0.5 * 0.56 = 0.28
#   classes of cell (0, 0), truth class 1: (0.75 - 1)^2 + 0.25^2 = 0.125
#   total 0.04 + 0.28 + 0.125 = 0.445
IMAGE_A = grid(
    {
        (0, 0): [0.5, 0.5, 0.5, 0.5, 0.8, 0.5, 0.5, 0.25, 0.25, 0.6, 0.75, 0.25],
        (0, 1): [0.5, 0.5, 0.5, 0.5, 0.2, 0.5, 0.5, 0.5, 0.5, 0, 0.5, 0.5],
        (1, 1): [0.5, 0.5, 0.5, 0.5, 0.4, 0.5, 0.5, 0.5, 0.5, 0, 0.5, 0.5],
    }
)
# Image B, truth class 2. Cell (0, 0): predictor 0 is a 0.5x0.5-pixel box at (1, 1): IoU
# 0.25 / 4 = 1/16, confidence 0.3. Predictor 1: x = 0.25 (centre x 0.5), w = 0.125
# (0.5 pixels), h = 0.5: the box [0.25, 0, 0.75, 2] lies inside the truth, IoU 1/4, so
# predictor 1 is responsible; confidence 0.5. Classes (0.5, 0.5).
#   coordinates: 5 * (0.25 - 0.5)^2                      = 0.3125
#   sizes: 5 * (sqrt(0.125) - sqrt(0.5))^2 = 5 * (0.625 - 2 * 0.25) = 0.625
#   confidence of predictor 1, target its IoU 1/4: (0.5 - 0.25)^2 = 0.0625
#   no-object: 0.5 * 0.3^2 = 0.045
#   classes: 0.5^2 + (0.5 - 1)^2 = 0.5
#   total 1.545
IMAGE_B = grid({(0, 0): [0.5, 0.5, 0.125, 0.125, 0.3, 0.25, 0.5, 0.125, 0.5, 0.5, 0.5, 0.5]})
TRUTH_B = {"boxes": TRUTH["boxes"], "labels": np.array([2])}


def loss_of(*outputs_and_targets):
    outputs = np.stack([o for o, _ in outputs_and_targets])
    return yolo_loss(
        mv.tensor(outputs), [t for _, t in outputs_and_targets], B=2, image_size=4
    ).item()


def test_loss_image_a():
    assert loss_of((IMAGE_A, TRUTH)) == pytest.approx(0.445, abs=1e-9)


def test_loss_image_b_highest_iou_predictor_is_responsible():
    assert loss_of((IMAGE_B, TRUTH_B)) == pytest.approx(1.545, abs=1e-9)


def test_loss_is_averaged_over_images():
    assert loss_of((IMAGE_A, TRUTH), (IMAGE_B, TRUTH_B)) == pytest.approx(
        (0.445 + 1.545) / 2, abs=1e-9
    )


def test_loss_without_objects_is_the_no_object_term():
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    # image A's confidences 0.8, 0.6, 0.2, 0.4, all "no object": 0.5 * (0.64 + 0.36 + 0.04 + 0.16)
    assert loss_of((IMAGE_A, empty)) == pytest.approx(0.6, abs=1e-9)


def test_each_object_is_answered_by_the_best_predictor_of_its_own_cell(device, rng):
    _, targets = shapes_batch(6, image_size=64, max_objects=4)
    preds = rng.random((6, 4, 4, 3, 5))
    has_object, _, _, corners = encode_targets(targets, 4, 64)
    assert has_object.sum() >= 6
    responsible, ious = map(
        to_numpy,
        responsible_predictors(mv.tensor(preds, device=device).data, has_object, corners, 64),
    )
    guesses = predicted_corners(preds[..., :4], 64)
    for k, i, j in zip(*np.nonzero(has_object)):  # object by object, as the paper puts it
        expected = box_iou(guesses[k, i, j], corners[k, i, j][None])[:, 0]
        np.testing.assert_array_equal(ious[k, i, j], expected)
        assert responsible[k, i, j].tolist() == [b == expected.argmax() for b in range(3)]
    assert not responsible[~has_object].any() and not ious[~has_object].any()


def test_decode_class_specific_scores():
    # S=2, B=1, C=2: cell (1, 0) holds (0.5, 0.5, 0.5, 0.5), confidence 0.8, classes (0.25, 0.75):
    # centre ((0 + 0.5) * 2, (1 + 0.5) * 2) = (1, 3), 2x2 pixels; scores 0.8 * 0.25 and 0.8 * 0.75
    out = np.zeros((1, 2, 2, 7))
    out[0, 1, 0] = [0.5, 0.5, 0.5, 0.5, 0.8, 0.25, 0.75]
    (result,) = decode(out, B=1, image_size=4, score_threshold=0.1)
    np.testing.assert_allclose(result["boxes"], [[0, 2, 2, 4], [0, 2, 2, 4]])
    np.testing.assert_array_equal(result["labels"], [2, 1])
    np.testing.assert_allclose(result["scores"], [0.6, 0.2], rtol=1e-6)


def test_decode_suppresses_duplicates_of_one_class():
    # two predictors of cell (0, 0) give the same 2x2 box, confidences 0.9 and 0.5, one class
    out = np.zeros((1, 2, 2, 11))
    out[0, 0, 0] = [0.5, 0.5, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0]
    (result,) = decode(out, B=2, image_size=4, score_threshold=0.1)
    np.testing.assert_allclose(result["scores"], [0.9], rtol=1e-6)
    np.testing.assert_allclose(result["boxes"], [[0, 0, 2, 2]])


def test_paper_tables():
    assert sum(isinstance(layer, tuple) for layer in FULL) == 24
    assert sum(isinstance(layer, tuple) for layer in FAST) == 9


@pytest.mark.slow  # a paper-size forward pass
@pytest.mark.parametrize("variant", ["full", "fast"])
def test_paper_size_output_is_7x7x30(variant):
    model = YOLOv1(variant).eval()
    with mv.no_grad():
        out = model(mv.zeros(1, 3, 448, 448))
    assert out.shape == (1, 7, 7, 30)


def test_predict_format():
    model = YOLOv1.tiny(3, 64).eval()
    (result,) = model.predict(mv.rand(1, 3, 64, 64))
    assert result["boxes"].shape[1:] == (4,) and result["boxes"].dtype == np.float32
    assert set(result["labels"]) <= {1, 2, 3} and len(result["scores"]) == len(result["labels"])


def test_bad_inputs():
    model = YOLOv1.tiny(3, 64)
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\).*got \(1, 1, 64, 64\)"):
        model(mv.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\).*got \(1, 3, 32, 32\)"):
        model(mv.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="S must be 4"):
        YOLOv1("tiny", S=7, num_classes=3, image_size=64)
    with pytest.raises(ValueError, match="variant"):
        YOLOv1("huge")
