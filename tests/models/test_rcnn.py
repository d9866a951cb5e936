"""R-CNN and Fast R-CNN: the warp, the proposals, the two models agreeing where they must, training."""

import functools

import numpy as np
import pytest

import minivision as mv
from minivision.models.rcnn import (
    RCNN,
    FastRCNN,
    crop_and_warp,
    grid_proposals,
    pooled_boxes,
    training_proposals,
)
from minivision.ops import box_iou, roi_pool
from tests.models.common import (
    assert_every_parameter_gets_a_gradient,
    assert_overfits_one_batch,
    shapes_batch,
)

MODELS = (RCNN, FastRCNN)


def random_image(shape=(2, 3, 24, 20), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# --------------------------------------------------------------------------- crop and warp
def test_whole_image_warp_is_torch_bilinear_resize():
    torch = pytest.importorskip("torch")
    images = random_image()
    boxes, batch = np.array([[0, 0, 20, 24], [0, 0, 20, 24]]), np.array([0, 1])
    for size in (8, 32):  # down and up
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(images), size=(size, size), mode="bilinear", align_corners=False
        ).numpy()
        np.testing.assert_allclose(
            crop_and_warp(images, boxes, batch, size), expected, rtol=0, atol=1e-6
        )


def test_aligned_box_of_the_warp_size_is_copied_unchanged():
    images = random_image()
    crops = crop_and_warp(images, np.array([[3, 5, 11, 13], [12, 16, 20, 24]]), np.array([1, 0]), 8)
    assert np.array_equal(crops[0], images[1, :, 5:13, 3:11])
    assert np.array_equal(crops[1], images[0, :, 16:24, 12:20])


def test_box_twice_the_warp_size_averages_2x2_blocks():
    images = random_image()
    crop = crop_and_warp(images, np.array([[2, 4, 18, 20]]), np.array([1]), 8)[0]
    blocks = images[1, :, 4:20, 2:18].reshape(3, 8, 2, 8, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(crop, blocks, rtol=0, atol=1e-6)


def test_context_enlarges_the_box_about_its_centre():
    # warp 8 with 2 pixels of context: the 4-pixel box fills the middle 4 of 8, so it is doubled
    images = random_image()
    with_context = crop_and_warp(
        images, np.array([[8.0, 9.0, 12.0, 13.0]]), np.array([0]), 8, context=2
    )
    assert np.array_equal(
        with_context, crop_and_warp(images, np.array([[6.0, 7.0, 14.0, 15.0]]), np.array([0]), 8)
    )
    assert np.array_equal(with_context[0, :, 2:6, 2:6], images[0, :, 9:13, 8:12])


def test_warp_outside_the_image_repeats_the_edge():
    images = random_image()
    crop = crop_and_warp(images, np.array([[-4.0, 0.0, 4.0, 8.0]]), np.array([0]), 8)[0]
    assert np.array_equal(crop[:, :, :4], np.repeat(images[0, :, 0:8, 0:1], 4, axis=2))
    assert np.array_equal(crop[:, :, 4:], images[0, :, 0:8, 0:4])


# --------------------------------------------------------------------------- RoI boxes
def test_pooled_boxes_make_roi_pool_read_exactly_the_cells_a_box_covers():
    stride = 4
    features = random_image((1, 2, 8, 8), seed=1)
    box = np.array([[8.0, 4.0, 24.0, 20.0]])  # pixels [8, 24) x [4, 20): cells 2..5 x 1..4
    pooled = roi_pool(
        features, [pooled_boxes(box, stride)], output_size=4, spatial_scale=1 / stride
    ).numpy()
    assert np.array_equal(pooled[0], features[0, :, 1:5, 2:6])
    # the box as it is would reach one cell further: round(24 / 4) = 6 is included
    unshifted = roi_pool(features, [box], output_size=5, spatial_scale=1 / stride).numpy()
    assert np.array_equal(unshifted[0], features[0, :, 1:6, 2:7])


def test_pooled_boxes_of_a_box_narrower_than_a_cell_pool_its_first_cell():
    assert pooled_boxes(np.array([[5.0, 6.0, 7.0, 12.0]]), 4).tolist() == [[5.0, 6.0, 5.0, 8.0]]


# --------------------------------------------------------------------------- proposals
def test_grid_proposals_lie_inside_the_image_with_positive_sizes():
    boxes = grid_proposals(48, 64)
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()


@pytest.mark.parametrize("size, ratio", [(0.2, 1.0), (0.3, 0.5), (0.45, 2.0)])
def test_grid_covers_every_box_of_its_sizes_at_iou_06(size, ratio):
    # a box of a grid size and shape anywhere is at most step / 2 of its side from a grid box
    rng = np.random.default_rng(0)
    side = size * 64
    w, h = side / np.sqrt(ratio), side * np.sqrt(ratio)
    corner = rng.uniform(0, 1, (200, 2)) * (64 - np.array([w, h]))
    objects = np.concatenate([corner, corner + [w, h]], axis=1)
    assert box_iou(objects, grid_proposals(64, 64)).max(axis=1).min() >= 0.6


def test_training_proposals_mix_objects_and_background():
    mv.manual_seed(0)
    gt = np.array([[10.0, 12.0, 30.0, 40.0], [40.0, 5.0, 60.0, 20.0]])
    boxes = training_proposals(gt, 48, 64, count=64)
    assert boxes.shape == (64, 4) and boxes.dtype == np.float32
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()
    best = box_iou(gt, boxes).max(axis=0)
    assert (best >= 0.5).sum() >= 8 and (best < 0.3).sum() >= 16


def test_training_proposals_keep_positive_sizes_when_jittered_off_the_image():
    mv.manual_seed(0)
    boxes = training_proposals(np.array([[0.0, 0.0, 2.0, 2.0]]), 16, 16, count=200, jitter=3.0)
    assert (boxes[:, 2:] - boxes[:, :2] >= 1 - 1e-6).all()
    assert (boxes >= 0).all() and (boxes <= 16).all()


def test_training_proposals_without_objects_are_all_random():
    mv.manual_seed(0)
    boxes = training_proposals(np.zeros((0, 4)), 32, 32, count=10)
    assert boxes.shape == (10, 4) and (boxes[:, 2:] > boxes[:, :2]).all()


# --------------------------------------------------------------------------- the two models
def _twins(seed=0):
    """An R-CNN with 1x1 convolutions (cropping cannot change what they see) and BN statistics
    from a few training steps' worth of images, and a Fast R-CNN with its weights, both in eval
    mode and float64 (in float32 a matrix multiply rounds differently for a crop and the whole
    image: features differ by 6e-8)."""
    mv.manual_seed(seed)
    slow = RCNN(3, kernel_size=1, warp=32, pool_size=4)
    with (
        mv.no_grad()
    ):  # BN's running statistics of real images, so that its output is not all 0 after ReLU
        for step in range(20):
            slow.body(shapes_batch(4, 64, seed=100 + step)[0])
    fast = FastRCNN(**{k: v for k, v in slow.config.items() if k not in ("warp", "context")})
    fast.load_state_dict(slow.state_dict())
    for value in list(slow.state_dict().values()) + list(fast.state_dict().values()):
        value.data = value.data.astype(np.float64)
    return slow.eval(), fast.eval()


def float64_images(count, size):
    return mv.tensor(shapes_batch(count, size)[0].numpy().astype(np.float64))


# boxes of the warp size (32) at multiples of the stride (4): the crop is the image itself
ALIGNED = [
    np.array([[0, 0, 32, 32], [8, 4, 40, 36], [32, 32, 64, 64]], np.float32),
    np.array([[12, 20, 44, 52]], np.float32),
]


def test_rcnn_and_fast_rcnn_agree_on_aligned_boxes_of_the_warp_size():
    # pooling one cell too many (the boxes as they are) moves the logits by 2e-3 of 1e-2
    slow, fast = _twins()
    images = float64_images(2, 64)
    with mv.no_grad():
        (slow_logits, slow_deltas), (fast_logits, fast_deltas) = (
            slow(images, ALIGNED),
            fast(images, ALIGNED),
        )
        features = fast.body(images).numpy()
    assert (features > 0).mean() > 0.2  # features that could tell regions apart, and do:
    assert len(np.unique(slow_logits.numpy()[:, 0])) == 4
    assert slow_logits.shape == (4, 4) and slow_deltas.shape == (4, 16)
    np.testing.assert_allclose(slow_logits.numpy(), fast_logits.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(slow_deltas.numpy(), fast_deltas.numpy(), rtol=1e-12, atol=1e-15)
    for a, b in zip(
        slow.predict(images, ALIGNED, score_thresh=0.0),
        fast.predict(images, ALIGNED, score_thresh=0.0),
    ):
        assert len(a["boxes"]) > 0 and np.array_equal(a["labels"], b["labels"])
        np.testing.assert_allclose(a["boxes"], b["boxes"], rtol=1e-6)
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-6)


def test_rcnn_scores_a_resized_box_as_fast_rcnn_scores_the_resized_image():
    # a 16-pixel box warped to 32 is the image upsampled 2x (bilinear) and cropped; Fast R-CNN
    # on that upsampled image, with the box doubled, pools the same cells
    torch = pytest.importorskip("torch")
    slow, fast = _twins(seed=1)
    images = float64_images(1, 32)
    big = torch.nn.functional.interpolate(
        torch.from_numpy(images.numpy()), scale_factor=2, mode="bilinear", align_corners=False
    ).numpy()
    box = np.array([[8.0, 4.0, 24.0, 20.0]])
    with mv.no_grad():
        slow_logits, _ = slow(images, [box])
        fast_logits, _ = fast(mv.tensor(big), [box * 2])
    np.testing.assert_allclose(slow_logits.numpy(), fast_logits.numpy(), rtol=1e-10, atol=1e-14)


class _Recorder(mv.nn.Module):
    """Passes its input through ``inner`` and records the input's shape."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.shapes = inner, []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.inner(x)


@pytest.mark.parametrize("cls, step, count", [(FastRCNN, 0.25, 2094), (RCNN, 0.5, 643)])
def test_tiny_default_proposals_are_the_grid_at_its_proposal_step(cls, step, count):
    model = cls.tiny(3, 64)
    proposals = model.default_proposals(mv.zeros((2, 3, 64, 64)))
    assert len(proposals) == 2 and model.config["proposal_step"] == step
    np.testing.assert_array_equal(proposals[1], grid_proposals(64, 64, step=step))
    assert len(proposals[1]) == count


def test_tiny_rcnn_and_fast_rcnn_share_their_layers():
    slow, fast = RCNN.tiny(3, 64), FastRCNN.tiny(3, 64)
    assert {k: v.shape for k, v in slow.state_dict().items()} == {
        k: v.shape for k, v in fast.state_dict().items()
    }
    assert (
        slow.config["warp"] == 16 and slow.stride == 4
    )  # the crop's map is the 4 x 4 pooling grid


def test_rcnn_runs_the_body_per_crop_and_fast_rcnn_once_per_image(monkeypatch):
    monkeypatch.setattr("minivision.models.rcnn.CROP_CHUNK", 3)
    images, _ = shapes_batch(2, 64)
    for model, expected in (
        (RCNN(3), [(3, 3, 32, 32), (1, 3, 32, 32)]),
        (FastRCNN(3), [(2, 3, 64, 64)]),
    ):
        model.body = _Recorder(model.body)
        with mv.no_grad():
            model(images, ALIGNED)
        assert model.body.shapes == expected, type(model).__name__


@pytest.mark.parametrize("cls", MODELS)
def test_shapes_and_predict_format(cls):
    mv.manual_seed(0)
    model = cls.tiny(3, 64).eval()
    images, _ = shapes_batch(2, 64)
    proposals = [grid_proposals(64, 64)[:7], grid_proposals(64, 64)[-5:]]
    with mv.no_grad():
        logits, deltas = model(images, proposals)
    assert logits.shape == (12, 4) and deltas.shape == (12, 16)
    results = model.predict(images, proposals, score_thresh=0.0)
    assert len(results) == 2
    for result in results:
        assert result["boxes"].dtype == np.float32 and result["boxes"].shape[1] == 4
        assert result["labels"].dtype == np.int64 and set(result["labels"]) <= {1, 2, 3}
        assert result["scores"].shape == result["labels"].shape == result["boxes"].shape[:1]
        assert (result["boxes"] >= 0).all() and (result["boxes"] <= 64).all()
    assert len(model.predict(images[:1])) == 1  # default proposals: the grid


@pytest.mark.parametrize("cls", MODELS)
def test_registry_contract(cls):
    model = cls.tiny(3, 32)
    assert (
        cls.task == "detection"
        and model.config["num_classes"] == 3
        and model.config["image_size"] == 32
    )
    rebuilt = cls(**model.config)
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())


@pytest.mark.parametrize("cls", MODELS)
def test_every_parameter_gets_a_gradient(cls):
    mv.manual_seed(0)
    assert_every_parameter_gets_a_gradient(cls.tiny(3, 64), shapes_batch(2, 64, max_objects=3))


@pytest.mark.parametrize("cls", MODELS)
def test_loss_falls_when_overfitting_one_batch(cls):
    # fixed proposals: with fresh random ones each step the boxes to regress change every step
    # and the loss falls about 2x in 40 steps, not 5x
    mv.manual_seed(0)
    images, targets = batch = shapes_batch(2, 64, seed=3, max_objects=2)
    model = cls.tiny(3, 64)
    model.loss = functools.partial(
        model.loss, proposals=[training_proposals(t["boxes"], 64, 64, count=24) for t in targets]
    )
    assert_overfits_one_batch(model, batch, steps=30, lr=3e-3)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", MODELS)
def test_bad_images_targets_and_proposals(cls):
    model = cls.tiny(3, 32)
    images, targets = shapes_batch(2, 32)
    with pytest.raises(
        ValueError, match=r"images must have shape \(N, 3, H, W\), got \(3, 32, 32\)"
    ):
        model.predict(images[0])
    with pytest.raises(
        ValueError, match=r"images must have shape \(N, 3, H, W\), got \(2, 1, 32, 32\)"
    ):
        model(images[:, :1])
    with pytest.raises(ValueError, match="targets must hold one dict per image: 2 images, got 1"):
        model.loss(images, targets[:1])
    with pytest.raises(
        ValueError, match=r"proposals must be a list of 2 \(P, 4\) box arrays.*got a list of 1"
    ):
        model.predict(images, [ALIGNED[0]])
    with pytest.raises(ValueError, match=r"proposals must be a list of 2 .*got ndarray"):
        model(images, ALIGNED[0])
    with pytest.raises(
        ValueError, match=r"proposals\[1\] must have shape \(N, 4\).*got shape \(3,\)"
    ):
        model.loss(images, targets, [ALIGNED[0], np.zeros(3)])
    with pytest.raises(
        ValueError,
        match=r"proposals\[0\] must be finite with x2 > x1.*row 1: \[5.0, 5.0, 5.0, 9.0\]",
    ):
        model.predict(images, [np.array([[0, 0, 4, 4], [5, 5, 5, 9]]), ALIGNED[1]])
    with pytest.raises(
        ValueError, match=r"proposals\[1\] must hold at least one box, got shape \(0, 4\)"
    ):
        model(images, [ALIGNED[0], np.zeros((0, 4))])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(widths=()), r"widths must name at least one conv stage, got \(\)"),
        (dict(widths=(8, 0)), r"widths\[1\] must be a positive integer, got 0"),
        (dict(kernel_size=2), "kernel_size must be odd.*got 2"),
        (dict(pool_size=0), "pool_size must be a positive integer, got 0"),
        (dict(num_classes=0), "num_classes must be a positive integer, got 0"),
        (dict(warp=30), "warp must be a multiple of the body's stride 4.*got 30"),
        (dict(context=16), r"context must be an int in \[0, warp / 2\) = \[0, 16\), got 16"),
        (dict(context=1.5), r"context must be an int .*got 1.5"),
        (dict(proposal_step=0), r"proposal_step must be a number in \(0, 1\] .*got 0"),
        (dict(proposal_step="0.5"), r"proposal_step must be a number in \(0, 1\] .*got '0.5'"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RCNN(**{"num_classes": 3, **kwargs})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(height=0, width=8), "height and width must be positive ints, got 0 and 8"),
        (dict(step=0), r"step must be in \(0, 1\].*got 0"),
        (
            dict(sizes=(0.2, 1.5)),
            r"sizes must be fractions of the shorter side in \(0, 1\], got 1.5",
        ),
        (dict(ratios=(-1,)), r"ratios must be positive \(height / width\), got -1"),
    ],
)
def test_bad_grid(kwargs, message):
    with pytest.raises(ValueError, match=message):
        grid_proposals(**{"height": 32, "width": 32, **kwargs})


@pytest.mark.parametrize(
    "gt_boxes, count, message",
    [
        (np.zeros((4, 3)), 8, r"gt_boxes must have shape \(N, 4\)"),
        (np.zeros((5,)), 8, r"gt_boxes must have shape \(N, 4\)"),
        (np.zeros((0, 4)), -1, "count must be a positive integer, got -1"),
    ],
)
def test_training_proposals_bad_input(gt_boxes, count, message):
    from minivision.models.rcnn import training_proposals

    with pytest.raises(ValueError, match=message):
        training_proposals(gt_boxes, 64, 64, count=count)
