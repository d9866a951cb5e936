"""Every registered model: gradients reach every parameter, and the tiny form overfits one batch."""

import pytest

import minivision as mv
from minivision.models import MODELS
from minivision.models.rcnn import training_proposals
from tests.models.common import (
    assert_every_parameter_gets_a_gradient,
    assert_overfits_one_batch,
    shapes_batch,
)


class _FixedProposals:
    """R-CNN's and Fast R-CNN's loss on the same proposals at every step (they draw new ones
    each call otherwise): one batch to overfit means one set of regions. The RoIs each step
    samples from them are still drawn anew."""

    def __init__(self):
        self.proposals = None

    def __call__(self, model, images, targets):
        if self.proposals is None:
            self.proposals = [training_proposals(t["boxes"], *images.shape[2:]) for t in targets]
        return model.loss(images, targets, self.proposals)


# name -> (the tiny model, its gradient batch, its overfitting batch, overfitting settings)
CASES = {
    "faster_rcnn": (
        lambda: MODELS["faster_rcnn"].tiny(3, 64),
        lambda: shapes_batch(2, 64, seed=3, max_objects=3),
        lambda: shapes_batch(2, 64, seed=3, max_objects=3),
        dict(steps=50, lr=3e-3, factor=2.0),
    ),
    "fast_rcnn": (
        lambda: MODELS["fast_rcnn"].tiny(3, 64),
        lambda: shapes_batch(2, 64, seed=3, max_objects=3),
        lambda: shapes_batch(2, 64, seed=3, max_objects=3),
        dict(steps=45, lr=3e-3, factor=2.5, loss_of=_FixedProposals()),
    ),
    "rcnn": (
        lambda: MODELS["rcnn"].tiny(3, 64),
        lambda: shapes_batch(2, 64, seed=3, max_objects=3),
        lambda: shapes_batch(2, 64, seed=3, max_objects=3),
        dict(steps=45, lr=3e-3, factor=2.5, loss_of=_FixedProposals()),
    ),
    "localizer": (
        lambda: MODELS["localizer"].tiny(3, 64),
        lambda: shapes_batch(2, 64),
        lambda: shapes_batch(2, 64),
        dict(steps=30, lr=3e-3, factor=5.0),
    ),
    "overfeat": (
        lambda: MODELS["overfeat"].tiny(3, 64),
        lambda: shapes_batch(4, 64, seed=5),
        lambda: shapes_batch(2, 64, seed=5),
        dict(steps=30, lr=3e-3, factor=10.0),
    ),
    # objects from 5 to 56 pixels, so that every source map has positives
    "ssd": (
        lambda: MODELS["ssd"].tiny(3, 64),
        lambda: shapes_batch(4, 64, seed=3, max_objects=4, object_sizes=(5, 56)),
        lambda: shapes_batch(2, 64, seed=3, max_objects=3, object_sizes=(5, 56)),
        dict(steps=30, lr=3e-3, factor=5.0),
    ),
    "yolo": (
        lambda: MODELS["yolo"].tiny(3, 64),
        lambda: shapes_batch(2, 64, seed=3, max_objects=3),
        lambda: shapes_batch(2, 64, seed=3, max_objects=3),
        dict(steps=30, lr=3e-3, factor=10.0),
    ),
    "fcn": (lambda: MODELS["fcn"].tiny(3), lambda: shapes_batch(2), lambda: shapes_batch(), {}),
    "segnet": (
        lambda: MODELS["segnet"].tiny(3),
        lambda: shapes_batch(2),
        lambda: shapes_batch(),
        {},
    ),
    "unet": (lambda: MODELS["unet"].tiny(3), lambda: shapes_batch(2), lambda: shapes_batch(), {}),
}


def test_every_registered_model_is_covered():
    assert sorted(CASES) == sorted(MODELS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_parameter_gets_a_gradient(name):
    mv.manual_seed(0)
    build, gradient_batch, _, _ = CASES[name]
    assert_every_parameter_gets_a_gradient(build(), gradient_batch())


@pytest.mark.parametrize("name", sorted(CASES))
def test_tiny_overfits_one_batch(name):
    mv.manual_seed(0)
    build, _, overfit_batch, settings = CASES[name]
    assert_overfits_one_batch(build(), overfit_batch(), **settings)
