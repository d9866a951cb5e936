"""Pascal VOC readers on small folders built in tmp_path, and safe XML parsing."""

import re
import sys

import numpy as np
import pytest
from PIL import Image

from minivision.data import VOC_CLASSES, VOCDetection, VOCSegmentation, voc_colormap
from minivision.data.voc import parse_xml
from tests.data.helpers import voc_xml, write_image

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<annotation><object><name>&lol3;</name></object></annotation>
"""


@pytest.fixture(params=["defusedxml", "fallback"])
def xml_path(request, monkeypatch):
    """Run a test once with defusedxml and once as if it were not installed."""
    if request.param == "fallback":
        monkeypatch.setitem(sys.modules, "defusedxml", None)
        monkeypatch.setitem(sys.modules, "defusedxml.ElementTree", None)
    return request.param


def test_detection_converts_one_based_corners(voc_root):
    data = VOCDetection(voc_root, "train")
    assert len(data) == 2 and data.num_classes == 20 and data.class_names[11] == "dog"
    image, target = data[0]
    assert (
        image.shape == (3, 30, 40)
        and image.dtype == np.float32
        and 0 <= image.min() <= image.max() <= 1
    )
    # dog: xmin=1..xmax=40, ymin=1..ymax=30 covers the whole 40x30 image; cat: 5,6..10,12
    np.testing.assert_array_equal(target["boxes"], [[0, 0, 40, 30], [4, 5, 10, 12]])
    assert target["boxes"].dtype == np.float32
    assert target["labels"].tolist() == [12, 8] and target["labels"].dtype == np.int64
    assert target["difficult"].tolist() == [False, True]
    assert target["image_id"] == "a"


def test_detection_without_objects_and_without_difficult(voc_root):
    _, empty = VOCDetection(voc_root, "val")[0]
    assert (
        empty["boxes"].shape == (0, 4)
        and empty["labels"].shape == (0,)
        and empty["difficult"].shape == (0,)
    )
    _, target = VOCDetection(voc_root, "train", keep_difficult=False)[0]
    assert target["labels"].tolist() == [12] and target["difficult"].tolist() == [False]


def test_class_names_are_the_twenty_voc_classes_in_order():
    assert (
        len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    )
    assert list(VOC_CLASSES) == sorted(VOC_CLASSES)


def test_safe_parsing_reads_a_normal_annotation(tmp_path, xml_path):
    path = tmp_path / "ok.xml"
    path.write_text(voc_xml(10, 10, [("cat", 1, 2, 3, 4, False)]))
    assert parse_xml(path).findtext("object/name") == "cat"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_entity_expansion_attack_is_refused(tmp_path, xml_path, encoding):
    path = tmp_path / "lol.xml"
    text = (
        BILLION_LAUGHS
        if encoding == "utf-8"
        else BILLION_LAUGHS.replace('"1.0"', '"1.0" encoding="utf-16"')
    )
    path.write_bytes(text.encode(encoding))
    with pytest.raises(
        ValueError, match="lol.xml' declares a DOCTYPE or entities; refusing to parse"
    ):
        parse_xml(path)


def test_attack_inside_a_dataset_names_the_file(voc_root, xml_path):
    (voc_root / "Annotations" / "a.xml").write_text(BILLION_LAUGHS)
    with pytest.raises(ValueError, match=r"a\.xml' declares a DOCTYPE"):
        VOCDetection(voc_root)[0]


def test_malformed_xml(voc_root, xml_path):
    (voc_root / "Annotations" / "a.xml").write_text("<annotation><object></annotation>")
    with pytest.raises(ValueError, match=r"a\.xml' is not well-formed XML"):
        VOCDetection(voc_root)[0]


@pytest.mark.parametrize(
    "objects, message",
    [
        (
            [("dog", 0, 1, 5, 5, False)],
            r"box \[-1.0, 0.0, 5.0, 5.0\] .* lies outside the 40x30 image",
        ),
        (
            [("dog", 1, 1, 41, 5, False)],
            r"box \[0.0, 0.0, 41.0, 5.0\] .* lies outside the 40x30 image",
        ),
        ([("unicorn", 1, 1, 5, 5, False)], "unknown class name 'unicorn'; expected one of"),
    ],
)
def test_bad_annotations(voc_root, objects, message):
    (voc_root / "Annotations" / "a.xml").write_text(voc_xml(40, 30, objects))
    with pytest.raises(ValueError, match=message):
        VOCDetection(voc_root)[0]


def test_missing_coordinate(voc_root):
    (voc_root / "Annotations" / "a.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>1</xmin></bndbox></object></annotation>"
    )
    with pytest.raises(
        ValueError, match=r"a\.xml': object 0 field bndbox/ymin is None; expected a finite number$"
    ):
        VOCDetection(voc_root)[0]


@pytest.mark.parametrize(
    "corner, text", [(1, "nan"), (2, "NaN"), (3, "inf"), (4, "-Infinity"), (3, "ten")]
)
def test_non_finite_coordinate_names_object_and_field(voc_root, corner, text):
    bad = ["cat", 5, 6, 10, 12, False]
    bad[corner] = text
    (voc_root / "Annotations" / "a.xml").write_text(
        voc_xml(40, 30, [("dog", 1, 1, 40, 30, False), tuple(bad)])
    )
    tag = ("xmin", "ymin", "xmax", "ymax")[corner - 1]
    message = rf"a\.xml': object 1 field bndbox/{tag} is '{text}'; expected a finite number$"
    with pytest.raises(ValueError, match=message):
        VOCDetection(voc_root)[0]


@pytest.mark.parametrize(
    "reader, task, stem",
    [
        (VOCDetection, "Main", "../../outside"),
        (VOCDetection, "Main", "{tmp}/outside"),
        (VOCDetection, "Main", "link"),
        (VOCSegmentation, "Segmentation", "../../outside"),
    ],
)
def test_image_set_ids_must_name_files_inside_their_folders(voc_root, tmp_path, reader, task, stem):
    write_image(tmp_path / "outside.jpg", 30, 40)
    (tmp_path / "outside.xml").write_text(voc_xml(40, 30, []))
    (voc_root / "JPEGImages" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    (voc_root / "SegmentationClass").mkdir()
    (voc_root / "ImageSets" / task).mkdir(exist_ok=True)
    stem = stem.format(tmp=tmp_path)
    (voc_root / "ImageSets" / task / "train.txt").write_text(f"b\n{stem}\n")
    resolved = re.escape(repr(str((tmp_path / "outside.jpg").resolve())))
    with pytest.raises(
        ValueError,
        match=rf"train\.txt': image id {re.escape(repr(stem))} names "
        rf"{re.escape(repr(stem + '.jpg'))}, which resolves to {resolved}, "
        rf"outside .*JPEGImages'$",
    ):
        reader(voc_root)


def test_symlinks_inside_the_folder_are_read(voc_root):
    (voc_root / "JPEGImages" / "c.jpg").symlink_to(voc_root / "JPEGImages" / "a.jpg")
    (voc_root / "Annotations" / "c.xml").symlink_to(voc_root / "Annotations" / "a.xml")
    (voc_root / "ImageSets" / "Main" / "train.txt").write_text("c\n")
    image, target = VOCDetection(voc_root)[0]
    assert (
        image.shape == (3, 30, 40)
        and target["labels"].tolist() == [12, 8]
        and target["image_id"] == "c"
    )


def test_bad_folders_and_image_sets(voc_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="VOC root .*nowhere' does not exist"):
        VOCDetection(tmp_path / "nowhere")
    available = r"available: \['train', 'val'\]"
    with pytest.raises(
        ValueError, match=r"unknown image_set 'test': .*test.txt' does not exist; " + available
    ):
        VOCDetection(voc_root, "test")
    (voc_root / "SegmentationClass").mkdir()
    with pytest.raises(FileNotFoundError, match="has no ImageSets/Segmentation folder"):
        VOCSegmentation(voc_root)
    (voc_root / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"image file .*a\.jpg' does not exist"):
        VOCDetection(voc_root)[0]
    (voc_root / "Annotations").rename(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="has no Annotations folder"):
        VOCDetection(voc_root)


def _write_labels(path, labels, mode="P"):
    image = Image.fromarray(labels.astype(np.uint8), mode="L")
    if mode == "P":
        image = image.convert("P")
        image.putpalette(voc_colormap().ravel().tolist())
    else:
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@pytest.fixture
def seg_root(tmp_path):
    root = tmp_path / "VOC2012"
    write_image(root / "JPEGImages" / "s.jpg", 6, 5)
    labels = np.zeros((6, 5), np.int64)
    labels[1:4, 1:3] = 12
    labels[0, :] = 255
    _write_labels(root / "SegmentationClass" / "s.png", labels)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("s\n")
    return root, labels


def test_segmentation_reads_palette_indices_and_void(seg_root):
    root, labels = seg_root
    image, target = VOCSegmentation(root, "train")[0]
    assert image.shape == (3, 6, 5)
    assert target["semantic"].dtype == np.int64 and target["image_id"] == "s"
    np.testing.assert_array_equal(target["semantic"], labels)


def test_segmentation_rejects_colour_and_out_of_range_label_maps(seg_root):
    root, labels = seg_root
    _write_labels(root / "SegmentationClass" / "s.png", labels, mode="RGB")
    with pytest.raises(ValueError, match="has mode 'RGB'; expected a palette"):
        VOCSegmentation(root)[0]
    labels[2, 2] = 40
    _write_labels(root / "SegmentationClass" / "s.png", labels)
    with pytest.raises(ValueError, match=r"holds labels \[40\]; expected 0..20 or 255"):
        VOCSegmentation(root)[0]


def test_segmentation_size_mismatch(seg_root):
    root, _ = seg_root
    write_image(root / "JPEGImages" / "s.jpg", 7, 5)
    with pytest.raises(ValueError, match=r"label map is \(6, 5\), image is \(7, 5\)"):
        VOCSegmentation(root)[0]


def test_voc_colormap_known_entries():
    colours = voc_colormap()
    assert colours.shape == (256, 3) and colours.dtype == np.uint8
    assert colours[0].tolist() == [0, 0, 0] and colours[1].tolist() == [128, 0, 0]
    assert colours[15].tolist() == [192, 128, 128] and colours[255].tolist() == [224, 224, 192]
