"""COCO JSON reader on a small folder built in tmp_path."""
import json

import numpy as np
import pytest

from minivision.data import COCODetection


def test_boxes_labels_and_image_order(coco_files):
    image_dir, annotation_file, _ = coco_files
    data = COCODetection(image_dir, annotation_file)
    assert len(data) == 3
    # category ids 1 (person) and 18 (dog) become labels 1 and 2, in sorted id order
    assert data.class_names == ("person", "dog") and data.category_ids == [1, 18] and data.num_classes == 2
    assert data.label_of == {1: 1, 18: 2}
    ids = [data[i][1]["image_id"] for i in range(3)]
    assert ids == [3, 5, 7]
    image, target = data[0]  # image 3: bbox [1, 2, 3, 4] (x, y, w, h)
    assert image.shape == (3, 16, 16) and image.dtype == np.float32
    np.testing.assert_array_equal(target["boxes"], [[1, 2, 4, 6]])
    assert target["labels"].tolist() == [1] and target["labels"].dtype == np.int64


def test_image_without_annotations_has_zero_boxes(coco_files):
    _, target = COCODetection(*coco_files[:2])[1]
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == np.float32
    assert target["labels"].shape == (0,) and target["iscrowd"].shape == (0,)


def test_crowd_annotations_skipped_or_flagged(coco_files):
    image_dir, annotation_file, _ = coco_files
    _, target = COCODetection(image_dir, annotation_file)[2]  # image 7
    np.testing.assert_array_equal(target["boxes"], [[2.5, 3.0, 12.5, 7.5]])
    assert target["labels"].tolist() == [2] and target["iscrowd"].tolist() == [False]
    _, target = COCODetection(image_dir, annotation_file, keep_crowd=True)[2]
    np.testing.assert_array_equal(target["boxes"], [[2.5, 3.0, 12.5, 7.5], [0, 0, 32, 24]])
    assert target["labels"].tolist() == [2, 1] and target["iscrowd"].tolist() == [False, True]


def _rewrite(annotation_file, data, change):
    change(data)
    annotation_file.write_text(json.dumps(data))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("categories"),
     r"has no 'categories' key; a COCO file needs \('images', 'annotations', 'categories'\)"),
    (lambda d: d["annotations"][1].pop("bbox"), r"annotations\[1\] lacks \['bbox'\]"),
    (lambda d: d["images"][0].pop("file_name"), r"images\[0\] lacks \['file_name'\]"),
    (lambda d: d["annotations"][0].update(image_id=99), "refers to image_id 99, which is not in 'images'"),
    (lambda d: d["annotations"][0].update(category_id=2), r"has category_id 2, not in 'categories' \[1, 18\]"),
])
def test_malformed_annotation_files(coco_files, change, message):
    image_dir, annotation_file, data = coco_files
    _rewrite(annotation_file, data, change)
    with pytest.raises(ValueError, match=message):
        COCODetection(image_dir, annotation_file)


def test_box_outside_the_image(coco_files):
    image_dir, annotation_file, data = coco_files
    _rewrite(annotation_file, data, lambda d: d["annotations"][2].update(bbox=[10, 2, 8, 4]))
    with pytest.raises(ValueError, match=r"bbox \[10, 2, 8, 4\] \(x, y, w, h\) lies outside the 16x16 image"):
        COCODetection(image_dir, annotation_file)[0]


def test_small_overhang_is_clipped_and_empty_boxes_skipped(coco_files):
    image_dir, annotation_file, data = coco_files
    _rewrite(annotation_file, data, lambda d: d["annotations"].extend([
        {"id": 8, "image_id": 3, "bbox": [10, 10, 6.5, 6.5], "category_id": 18},
        {"id": 9, "image_id": 3, "bbox": [4, 4, 0, 3], "category_id": 18},
    ]))
    _, target = COCODetection(image_dir, annotation_file)[0]
    np.testing.assert_array_equal(target["boxes"], [[1, 2, 4, 6], [10, 10, 16, 16]])


def test_missing_paths_and_bad_json(coco_files, tmp_path):
    image_dir, annotation_file, _ = coco_files
    with pytest.raises(FileNotFoundError, match="image_dir .*nowhere' does not exist"):
        COCODetection(tmp_path / "nowhere", annotation_file)
    with pytest.raises(FileNotFoundError, match=r"annotation_file .*missing\.json' does not exist"):
        COCODetection(image_dir, tmp_path / "missing.json")
    annotation_file.write_text("{not json")
    with pytest.raises(ValueError, match=r"instances\.json' is not valid JSON"):
        COCODetection(image_dir, annotation_file)
    annotation_file.write_text("[]")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        COCODetection(image_dir, annotation_file)


def test_unreadable_image(coco_files):
    image_dir, annotation_file, _ = coco_files
    (image_dir / "three.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"image file .*three\.png' could not be decoded"):
        COCODetection(image_dir, annotation_file)[0]
