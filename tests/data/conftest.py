"""Fixtures for the data tests: small VOC and COCO folders built in tmp_path."""

import json

import pytest

from tests.data.helpers import voc_xml, write_image


@pytest.fixture
def voc_root(tmp_path):
    """A VOC year folder: image 'a' (40x30, a dog and a difficult cat), image 'b' (20x10, no objects)."""
    root = tmp_path / "VOC2007"
    for stem, (w, h) in {"a": (40, 30), "b": (20, 10)}.items():
        write_image(root / "JPEGImages" / f"{stem}.jpg", h, w)
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text(
        voc_xml(40, 30, [("dog", 1, 1, 40, 30, False), ("cat", 5, 6, 10, 12, True)])
    )
    (root / "Annotations" / "b.xml").write_text(voc_xml(20, 10, []))
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("a\nb\n")
    (main / "val.txt").write_text("b\n")
    return root


@pytest.fixture
def coco_files(tmp_path):
    """Three images (ids 7, 3, 5; 5 has no annotation) and categories with sparse ids 18, 1."""
    image_dir = tmp_path / "images"
    for name, (w, h) in {"seven.png": (32, 24), "three.png": (16, 16), "five.png": (8, 8)}.items():
        write_image(image_dir / name, h, w)
    data = {
        "images": [
            {"id": 7, "file_name": "seven.png", "width": 32, "height": 24},
            {"id": 3, "file_name": "three.png", "width": 16, "height": 16},
            {"id": 5, "file_name": "five.png", "width": 8, "height": 8},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "bbox": [2.5, 3.0, 10.0, 4.5],
                "category_id": 18,
                "iscrowd": 0,
            },
            {"id": 2, "image_id": 7, "bbox": [0, 0, 32, 24], "category_id": 1, "iscrowd": 1},
            {"id": 3, "image_id": 3, "bbox": [1, 2, 3, 4], "category_id": 1},
        ],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
    }
    annotation_file = tmp_path / "instances.json"
    annotation_file.write_text(json.dumps(data))
    return image_dir, annotation_file, data
