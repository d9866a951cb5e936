"""benchmarks/gpu_targets.py: each GPU target read off results files, met or missed."""

import json

import pytest

from tests.helpers import benchmark_module


@pytest.fixture(scope="module")
def gpu_targets():
    return benchmark_module("gpu_targets")


def _write(directory, name, results):
    (directory / name).write_text(json.dumps({"results": results}))


def test_every_target_is_met_or_missed_from_the_results(gpu_targets, tmp_path, capsys):
    _write(
        tmp_path,
        "layers_cuda.json",
        [
            dict(
                layer="conv 3x3 N32 64->64 128x128", forward_backward_ratio=2.4, forward_ratio=2.0
            ),
            dict(layer="conv 1x1 N16 256->64 56x56", forward_backward_ratio=2.6, forward_ratio=1.0),
            dict(
                layer="max_unpool 2x2 N16 C64 56->112",
                forward_backward_ratio=1.6,
                forward_ratio=1.0,
            ),
            dict(
                layer="bilinear 2x N8 C64 112->224", forward_backward_ratio=9.0, forward_ratio=9.0
            ),  # no target
        ],
    )
    _write(
        tmp_path,
        "boxes_cuda.json",
        [
            dict(
                case="nms N=1,000",
                minivision_s=0.4e-3,
                torchvision_s=0.3e-3,
                same_as_torchvision=True,
            ),
            dict(
                case="batched_nms N=20,000, 80 classes",
                minivision_s=1e-3,
                torchvision_s=1e-3,
                same_as_torchvision=False,
            ),
            dict(case="box_iou 2,000 x 3,000", minivision_s=1e-3, torchvision_s=1e-3),
        ],
    )
    _write(tmp_path, "models.json", [dict(model="tiny YOLO", minivision_s=0.050)])
    _write(tmp_path, "models_cuda.json", [dict(model="tiny YOLO", minivision_s=0.004)])
    met = {
        row["what"].split(" /")[0].split(",")[0]: row["met"]
        for row in gpu_targets.targets(tmp_path)
    }
    assert met == {
        "conv 3x3 N32 64->64 128x128 fwd+bwd": True,
        "conv 1x1 N16 256->64 56x56 fwd+bwd": False,
        "max_unpool 2x2 N16 C64 56->112 fwd+bwd": False,
        "nms N=1": True,
        "batched_nms N=20": False,
        "tiny YOLO step": True,
    }
    assert gpu_targets.main([str(tmp_path)]) == 0
    assert "| tiny YOLO step, CPU time / GPU time | 12.5 | >= 10 | yes |" in capsys.readouterr().out


def test_no_results_says_what_to_run(gpu_targets, tmp_path, capsys):
    assert gpu_targets.main([str(tmp_path)]) == 1
    assert "run benchmarks/gpu_check.sh first" in capsys.readouterr().out
