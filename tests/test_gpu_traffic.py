"""What a training step asks of the GPU besides its kernels: copies to the host, each of which
waits for the GPU to finish all it was given. The CuPy stand-in (tests/cupy_standin) counts
them, so these tests run in the stand-in run (``MINIVISION_CUPY_STANDIN=1 pytest -m gpu``)."""

import sys

import pytest

import minivision as mv
from minivision import optim
from minivision.models import MODELS
from tests.models.common import shapes_batch

# Each a check of the step's inputs, which needs their values on the host:
HOST_COPIES = {
    "yolo": 4,  # box_iou checks the guesses and the objects: finite (1 copy each), x2 >= x1 (1 each)
    "segnet": 5,  # each of the 4 max_unpool2d checks its switches' range (min and max in one copy); the loss its labels
    # anchor labelling and sampling, the proposal step (top-N, NMS) and RoI sampling run on the host: a known cost,
    # held here so that it does not grow unnoticed
    "faster_rcnn": 70,
    "fast_rcnn": 2,  # roi_pool checks its boxes (finite, batch index, range: one copy); the loss its labels
    "rcnn": 2,  # the same two
}
ONE_FOR_THE_LABELS = 1  # the other models: nll_loss checks its labels' range


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_training_step_copies_to_the_host_only_to_check_its_inputs(name, gpu):
    traffic = getattr(sys.modules["cupy"], "traffic", None)
    if traffic is None:
        pytest.skip("the counts come from the CuPy stand-in (MINIVISION_CUPY_STANDIN=1)")
    images, targets = shapes_batch(2, image_size=64, max_objects=3)
    mv.manual_seed(0)
    model = MODELS[name].tiny(3, 64).to(gpu)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    batch = images.to(gpu)
    traffic.clear()
    model.loss(batch, targets).backward()
    opt.step()
    assert traffic["to host"] == HOST_COPIES.get(name, ONE_FOR_THE_LABELS), dict(traffic)
