"""COCO JSON reader on a small folder built in tmp_path."""

import json
import re

import numpy as np
import pytest

from minivision.data import COCODetection
from tests.data.helpers import write_image


def test_boxes_labels_and_image_order(coco_files):
    image_dir, annotation_file, _ = coco_files
    data = COCODetection(image_dir, annotation_file)
    assert len(data) == 3
    # category ids 1 (person) and 18 (dog) become labels 1 and 2, in sorted id order
    assert (
        data.class_names == ("person", "dog")
        and data.category_ids == [1, 18]
        and data.num_classes == 2
    )
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


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d.pop("categories"),
            r"has no 'categories' key; a COCO file needs \('images', 'annotations', 'categories'\)",
        ),
        (lambda d: d["annotations"][1].pop("bbox"), r"annotations\[1\] lacks \['bbox'\]"),
        (lambda d: d["images"][0].pop("file_name"), r"images\[0\] lacks \['file_name'\]"),
        (
            lambda d: d["annotations"][0].update(image_id=99),
            "refers to image_id 99, which is not in 'images'",
        ),
        (
            lambda d: d["annotations"][0].update(category_id=2),
            r"has category_id 2, not in 'categories' \[1, 18\]",
        ),
    ],
)
def test_malformed_annotation_files(coco_files, change, message):
    image_dir, annotation_file, data = coco_files
    _rewrite(annotation_file, data, change)
    with pytest.raises(ValueError, match=message):
        COCODetection(image_dir, annotation_file)


BOX_EXPECTED = r"; expected \[x, y, width, height\]: 4 finite numbers with width, height >= 0$"


@pytest.mark.parametrize(
    "bbox, shown",
    [
        ([2.5, 3.0, float("nan"), 4.5], r"\[2\.5, 3\.0, nan, 4\.5\]"),
        ([float("inf"), 3.0, 10.0, 4.5], r"\[inf, 3\.0, 10\.0, 4\.5\]"),
        ([2.5, float("-inf"), 10.0, 4.5], r"\[2\.5, -inf, 10\.0, 4\.5\]"),
        (
            [2.5, 3.0, 10.0, 10**400],
            r"\[2\.5, 3\.0, 10\.0, 1000.*\.\.\.",
        ),  # an int beyond the float range
        ([2.5, 3.0, -10.0, 4.5], r"\[2\.5, 3\.0, -10\.0, 4\.5\]"),
        ([2.5, 3.0, 10.0, -0.5], r"\[2\.5, 3\.0, 10\.0, -0\.5\]"),
        ([2.5, 3.0, 10.0], r"\[2\.5, 3\.0, 10\.0\]"),
        ([2.5, 3.0, 10.0, 4.5, 1.0], r"\[2\.5, 3\.0, 10\.0, 4\.5, 1\.0\]"),
        (["2.5", "3", "10", "4.5"], r"\['2\.5', '3', '10', '4\.5'\]"),
        ([True, 3.0, 10.0, 4.5], r"\[True, 3\.0, 10\.0, 4\.5\]"),
        ({"x": 2.5}, r"\{'x': 2\.5\}"),
        (None, "None"),
    ],
)
def test_bad_bbox_is_refused_when_the_file_is_read(coco_files, bbox, shown):
    image_dir, annotation_file, data = coco_files
    _rewrite(annotation_file, data, lambda d: d["annotations"][0].update(bbox=bbox))
    with pytest.raises(
        ValueError,
        match=r"instances\.json': annotations\[0\] \(id 1\) field 'bbox' is "
        + shown
        + BOX_EXPECTED,
    ):
        COCODetection(image_dir, annotation_file)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d.update(images={"id": 7}),
            r"'images' is \{'id': 7\}; expected a list of objects",
        ),
        (lambda d: d.update(annotations=None), "'annotations' is None; expected a list of objects"),
        (
            lambda d: d["images"].__setitem__(1, "three.png"),
            r"images\[1\] is 'three\.png'; expected an object",
        ),
        (
            lambda d: d["images"][1].pop("id"),
            r"images\[1\] lacks \['id'\]; each entry needs \('id', 'file_name'\)",
        ),
        (
            lambda d: d["images"][1].update(id="3"),
            r"images\[1\] \(id '3'\) field 'id' is '3'; expected an integer",
        ),
        (
            lambda d: d["images"][1].update(id=3.0),
            r"images\[1\] \(id 3\.0\) field 'id' is 3\.0; expected an integer",
        ),
        (
            lambda d: d["images"][1].update(id=True),
            r"images\[1\] \(id True\) field 'id' is True; expected an integer",
        ),
        (
            lambda d: d["images"][1].update(file_name=3),
            r"images\[1\] \(id 3\) field 'file_name' is 3; expected a "
            "non-empty file name",
        ),
        (
            lambda d: d["images"][1].update(file_name=""),
            r"images\[1\] \(id 3\) field 'file_name' is ''; expected",
        ),
        (
            lambda d: d["annotations"][2].update(image_id="3"),
            r"annotations\[2\] \(id 3\) field 'image_id' is '3'; expected an integer",
        ),
        (
            lambda d: d["annotations"][0].update(category_id="18"),
            r"annotations\[0\] \(id 1\) field 'category_id' is '18'; expected an integer",
        ),
        (
            lambda d: d["annotations"][0].update(iscrowd="0"),
            r"annotations\[0\] \(id 1\) field 'iscrowd' is '0'; expected 0 or 1",
        ),
        (
            lambda d: d["annotations"][0].update(iscrowd=2),
            r"annotations\[0\] \(id 1\) field 'iscrowd' is 2; expected 0 or 1",
        ),
        (
            lambda d: d["annotations"][0].update(id="1"),
            r"annotations\[0\] \(id '1'\) field 'id' is '1'; expected an integer",
        ),
        (
            lambda d: d["categories"][0].update(id="18"),
            r"categories\[0\] \(id '18'\) field 'id' is '18'; expected an integer",
        ),
        (
            lambda d: d["categories"][1].update(name=None),
            r"categories\[1\] \(id 1\) field 'name' is None; expected a string",
        ),
    ],
)
def test_wrong_types_name_the_entry_and_field(coco_files, change, message):
    assert_refused(coco_files, change, message)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["images"][2].update(id=7),
            r"images\[2\] repeats id 7 of images\[0\]; ids in 'images' must be unique",
        ),
        (
            lambda d: d["categories"].append({"id": 18, "name": "cat"}),
            r"categories\[2\] repeats id 18 of categories\[0\]; ids in 'categories' must be unique",
        ),
        (
            lambda d: d["annotations"][2].update(id=1),
            r"annotations\[2\] repeats id 1 of annotations\[0\]; ids in 'annotations' must be unique",
        ),
    ],
)
def test_duplicate_ids(coco_files, change, message):
    assert_refused(coco_files, change, message)


def assert_refused(coco_files, change, message):
    """The annotation file changed by ``change`` is refused when read, with ``message``."""
    image_dir, annotation_file, data = coco_files
    _rewrite(annotation_file, data, change)
    with pytest.raises(ValueError, match=r"instances\.json': " + message):
        COCODetection(image_dir, annotation_file)


def test_annotations_without_ids_are_accepted(coco_files):
    image_dir, annotation_file, data = coco_files
    _rewrite(annotation_file, data, lambda d: [ann.pop("id") for ann in d["annotations"]])
    _, target = COCODetection(image_dir, annotation_file)[0]
    np.testing.assert_array_equal(target["boxes"], [[1, 2, 4, 6]])


@pytest.mark.parametrize(
    "file_name",
    [
        "../outside.png",
        "{outside}",
        "nested/../../outside.png",
        "link.png",
        "linked_dir/outside.png",
    ],
)
def test_image_paths_must_stay_inside_image_dir(coco_files, tmp_path, file_name):
    image_dir, annotation_file, data = coco_files
    outside = tmp_path / "outside.png"
    write_image(outside, 8, 8)
    (image_dir / "nested").mkdir()
    (image_dir / "link.png").symlink_to(outside)
    (image_dir / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    file_name = file_name.format(outside=outside)
    _rewrite(annotation_file, data, lambda d: d["images"][1].update(file_name=file_name))
    resolved = re.escape(repr(str(outside.resolve())))
    with pytest.raises(
        ValueError,
        match=rf"instances\.json': image id 3 has file_name {re.escape(repr(file_name))}, "
        rf"which resolves to {resolved}, outside .*images'$",
    ):
        COCODetection(image_dir, annotation_file)


def test_subfolders_and_symlinks_inside_image_dir_are_read(coco_files):
    image_dir, annotation_file, data = coco_files
    (image_dir / "sub").mkdir()
    (image_dir / "three.png").rename(image_dir / "sub" / "three.png")
    (image_dir / "seven_link.png").symlink_to(image_dir / "seven.png")
    _rewrite(
        annotation_file,
        data,
        lambda d: (
            d["images"][0].update(file_name="seven_link.png"),
            d["images"][1].update(file_name="sub/./three.png"),
        ),
    )
    data = COCODetection(image_dir, annotation_file)
    assert data[0][0].shape == (3, 16, 16) and data[2][0].shape == (3, 24, 32)
    assert data.image_paths[2] == (image_dir / "seven.png").resolve()


def test_box_outside_the_image(coco_files):
    image_dir, annotation_file, data = coco_files
    _rewrite(annotation_file, data, lambda d: d["annotations"][2].update(bbox=[10, 2, 8, 4]))
    with pytest.raises(
        ValueError, match=r"bbox \[10, 2, 8, 4\] \(x, y, w, h\) lies outside the 16x16 image"
    ):
        COCODetection(image_dir, annotation_file)[0]


def test_small_overhang_is_clipped_and_empty_boxes_skipped(coco_files):
    image_dir, annotation_file, data = coco_files
    _rewrite(
        annotation_file,
        data,
        lambda d: d["annotations"].extend(
            [
                {"id": 8, "image_id": 3, "bbox": [10, 10, 6.5, 6.5], "category_id": 18},
                {"id": 9, "image_id": 3, "bbox": [4, 4, 0, 3], "category_id": 18},
            ]
        ),
    )
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
