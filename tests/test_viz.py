"""viz: figures are drawn, PNGs written atomically, palette follows VOC, bad input explained."""

import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from minivision import viz  # noqa: E402


def test_voc_palette_known_entries():
    palette = viz.voc_colormap()
    # label 1 = binary 001 -> red gets the top bit (128); label 2 -> green; label 3 -> red+green
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0]
    assert palette[3].tolist() == [128, 128, 0]
    assert palette[15].tolist() == [192, 128, 128]  # VOC's "person"
    assert palette[255].tolist() == [224, 224, 192]  # VOC's void boundary colour


def _png_pixels(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_draw_boxes_writes_png_with_box_colour(tmp_path):
    image = np.zeros((3, 32, 32), np.float32)
    path = tmp_path / "boxes.png"
    viz.draw_boxes(
        image,
        np.array([[4.0, 4.0, 20.0, 24.0]]),
        labels=np.array([1]),
        scores=np.array([0.9]),
        class_names=["bg", "circle"],
        path=path,
    )
    pixels = _png_pixels(path)
    reds = (pixels[..., 0] > 100) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert reds.sum() > 20  # the outline is drawn in label 1's colour
    assert os.listdir(tmp_path) == ["boxes.png"]


def test_overlay_and_heatmap_and_curves_save(tmp_path):
    image = np.random.default_rng(0).random((16, 16, 3))
    mask = np.zeros((16, 16), np.int64)
    mask[4:8, 4:8] = 1
    viz.overlay_mask(image, mask, path=tmp_path / "mask.png")
    viz.score_heatmap(image, np.random.default_rng(1).random((3, 3)), path=tmp_path / "heat.png")
    viz.loss_curves(
        [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}], path=tmp_path / "curve.png"
    )
    assert sorted(os.listdir(tmp_path)) == ["curve.png", "heat.png", "mask.png"]


def test_mask_rows_draws_truth_and_prediction_in_the_palette(tmp_path):
    image = np.zeros((3, 16, 16), np.float32)
    truth = np.zeros((16, 16), np.int64)
    truth[2:14, 2:14] = 2  # label 2 is VOC green (0, 128, 0)
    path = tmp_path / "rows.png"
    fig = viz.mask_rows(
        [image, image], [truth, truth], [truth, np.zeros_like(truth)], "tiny net", path=path
    )
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "truth", "tiny net"]
    pixels = _png_pixels(path)
    greens = (pixels[..., 1] > 100) & (pixels[..., 0] < 40) & (pixels[..., 2] < 40)
    assert greens.sum() > 3 * 100  # three green squares: two truths and one prediction
    with pytest.raises(
        ValueError, match="need as many truths and predictions as images, got 2, 1 and 2"
    ):
        viz.mask_rows([image, image], [truth], [truth, truth])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"labels has 2 entries for 1 boxes"):
        viz.draw_boxes(np.zeros((8, 8)), np.zeros((1, 4)), labels=np.array([1, 2]))
    with pytest.raises(ValueError, match=r"image must be \(3, H, W\)"):
        viz.draw_boxes(np.zeros((2, 8, 8, 1)), np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"mask is \(4, 4\) but the image is \(8, 8\)"):
        viz.overlay_mask(np.zeros((8, 8)), np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="non-empty history"):
        viz.loss_curves([])
