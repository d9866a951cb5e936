"""The same results on every device: what runs on the CPU here runs on CUDA in a GPU session.

On a machine without CuPy the "cuda" cases skip; ``pytest -m gpu`` runs exactly them.
"""

import numpy as np
import pytest

import minivision as mv
from minivision import functional as F
from minivision import nn, ops, optim


def test_tensor_round_trip_and_gradient(device, rng):
    x = rng.standard_normal((3, 4))
    t = mv.tensor(x, dtype="float64", device=device, requires_grad=True)
    assert t.device == device
    ((t * t).sum()).backward()
    np.testing.assert_allclose(t.grad.numpy(), 2 * x)
    back = t.to("cpu")
    assert back.device == "cpu"
    np.testing.assert_array_equal(back.numpy(), x)


def test_conv_pool_unpool_agree_with_the_cpu(device, rng):
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    expected = F.conv2d(mv.tensor(x), mv.tensor(w), padding=1)
    got = F.conv2d(mv.tensor(x, device=device), mv.tensor(w, device=device), padding=1)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    pooled, switches = F.max_pool2d(got, 2, return_indices=True)
    _, cpu_switches = F.max_pool2d(expected, 2, return_indices=True)
    np.testing.assert_array_equal(switches.numpy(), cpu_switches.numpy())
    assert F.max_unpool2d(pooled, switches, 2, output_size=(9, 9)).shape == (2, 4, 9, 9)


def test_module_trains_and_saves_on_device(device, rng, tmp_path):
    mv.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 2),
    ).to(device)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = mv.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32), device=device)
    y = mv.tensor(np.array([0, 1, 0, 1]), device=device)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    mv.save(model.state_dict(), tmp_path / "w.npz")
    loaded = mv.load(tmp_path / "w.npz")
    assert set(loaded) == set(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded[key].numpy(), value.numpy(), err_msg=key)


def test_adam_steps_like_on_the_cpu(gpu, rng):
    start = rng.standard_normal((3, 4))
    finals = {}
    for where in ("cpu", gpu):
        weight = mv.tensor(start, device=where, requires_grad=True)
        opt = optim.Adam([weight], lr=0.1, weight_decay=0.01)
        for _ in range(3):
            opt.zero_grad()
            ((weight * weight * weight).sum()).backward()
            opt.step()
        finals[where] = weight.numpy()
    np.testing.assert_allclose(finals[gpu], finals["cpu"], rtol=1e-12)


def test_mixing_a_cpu_and_a_gpu_tensor_names_both_devices(gpu):
    x = mv.tensor(np.ones((1, 1, 4, 4), np.float32))
    w = mv.tensor(np.ones((1, 1, 3, 3), np.float32), device=gpu)
    with pytest.raises(ValueError, match="got both 'cpu' and 'cuda'"):
        F.conv2d(x, w)
    with pytest.raises(ValueError, match="got both 'cpu' and 'cuda'"):
        x[0, 0, :3, :3] + w[0, 0]


def test_box_iou_equals_the_cpu_to_the_bit(device, rng):
    corner = rng.uniform(0, 50, (40, 2))
    boxes = (
        np.concatenate([corner, corner + rng.uniform(0, 20, (40, 2))], axis=1)
        .round(1)
        .astype(np.float32)
    )
    xp = mv.backend.xp_for_device(device)
    got = ops.box_iou(xp.asarray(boxes), xp.asarray(boxes[:25]))
    np.testing.assert_array_equal(mv.backend.to_numpy(got), ops.box_iou(boxes, boxes[:25]))


def test_nms_is_identical_on_every_device(device, rng):
    boxes = rng.uniform(0, 100, (300, 2)).astype(np.float32)
    boxes = np.concatenate([boxes, boxes + rng.uniform(5, 30, (300, 2)).astype(np.float32)], axis=1)
    scores = rng.random(300).astype(np.float32)
    expected = ops.nms(boxes, scores, 0.5)
    xp = mv.backend.xp_for_device(device)
    got = ops.nms(xp.asarray(boxes), xp.asarray(scores), 0.5)
    np.testing.assert_array_equal(mv.backend.to_numpy(got), expected)


def test_one_seed_draws_the_same_numbers_on_every_device(gpu):
    draws = {}
    for where in ("cpu", gpu):
        mv.manual_seed(3)
        layer = nn.Conv2d(3, 4, 3).to(where)
        draws[where] = [
            mv.randn(4, 5, device=where).numpy(),
            layer.weight.numpy(),
            F.dropout(mv.ones(200, device=where), 0.5).numpy(),
        ]
    for got, expected in zip(draws[gpu], draws["cpu"]):
        np.testing.assert_array_equal(got, expected)


def test_checkpoint_and_optimizer_state_cross_devices(gpu, tmp_path):
    from minivision.checkpoint import save_checkpoint

    model = nn.Linear(3, 2).to(gpu)
    opt = optim.Adam(model.parameters(), lr=0.1)
    (model(mv.ones(4, 3, device=gpu)).sum()).backward()
    opt.step()
    save_checkpoint(tmp_path / "c.npz", model, opt, epoch=1)
    loaded = mv.load(
        tmp_path / "c.npz", device=gpu
    )  # numbers to the GPU, the checkpoint's text stays
    assert loaded["model/weight"].device == gpu
    cpu_opt = optim.Adam(nn.Linear(3, 2).parameters(), lr=0.1)
    cpu_opt.load_state_dict(opt.state_dict())  # GPU buffers into a CPU optimizer
    assert all(
        mv.backend.device_of(v) == "cpu"
        for entry in cpu_opt.state.values()
        for v in entry.values()
        if hasattr(v, "shape")
    )


def test_sliding_windows_on_the_gpu_match_the_cpu(gpu, rng):
    from minivision.models import sliding_window as sw

    mv.manual_seed(0)
    model = sw.PatchClassifier()
    image = rng.standard_normal((3, 30, 34)).astype(np.float32)
    expected = sw.classify_windows_naive(model, image, 18, 4).numpy()
    model.to(gpu)
    xp = mv.backend.xp_for_device(gpu)
    np.testing.assert_allclose(
        sw.classify_windows_naive(model, xp.asarray(image), 18, 4).numpy(),
        expected,
        rtol=1e-4,
        atol=1e-5,
    )
    fully_convolutional = sw.to_fully_convolutional(model)
    assert fully_convolutional(mv.tensor(image[None], device=gpu)).device == gpu
