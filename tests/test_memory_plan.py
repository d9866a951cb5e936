"""The memory plan: an upper bound of what a step really allocates, not far above it, and a
one-line refusal, naming the option to lower, before anything is built."""

import tracemalloc

import pytest

from minivision import memory_plan, optim
from minivision.data import DataLoader, Shapes
from minivision.memory_plan import parse_bytes, plan_run
from minivision.models import MODELS
from minivision.train import fit
from minivision.workflow import UsageError, train_model


def measured_training_peak(model_class, image_size, batch_size) -> int:
    """Peak bytes NumPy allocates to build the model and Adam and train two batches with ``fit``,
    after a step of another model of the class has filled the once-only caches."""
    data = Shapes(2 * batch_size, image_size=image_size, min_objects=1, max_objects=1, seed=3)
    model_class.tiny(3, image_size).loss(
        *next(iter(DataLoader(data, batch_size=batch_size)))
    ).backward()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model = model_class.tiny(3, image_size)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        fit(
            model,
            DataLoader(data, batch_size=batch_size),
            opt,
            lambda m, batch: m.loss(*batch),
            1,
            progress=False,
        )
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_plan_bounds_a_real_step_at_another_size_and_batch(name):
    """Probed at 64x64 and batches 4 and 16, planned for 128x128 at batch 6. The plan scales a
    step's allocations with the image's area; FCN pads its input by 100 pixels, so its maps
    grow more slowly than that and its plan is the most conservative (2.75x here)."""
    actual = measured_training_peak(MODELS[name], 128, 6)
    planned = plan_run(MODELS[name], 3, 128, 6, training=True).total
    assert actual <= planned <= 3 * actual, (actual, planned)


def test_refusal_names_the_largest_batch_that_fits(monkeypatch, tmp_path):
    plan = plan_run(MODELS["yolo"], 3, 64, 32, training=True, num_images=64)
    limit = plan.total - 8 * plan.per_image  # room for about 24 images
    monkeypatch.setenv(memory_plan.ENV_LIMIT, str(limit))
    with pytest.raises(UsageError) as refusal:
        train_model("yolo", "shapes", tmp_path / "run", train_images=64, progress=False)
    message = str(refusal.value)
    assert message.startswith("training yolo at --image-size 64 with --batch-size 32 needs about ")
    fits = int(message.split("; --batch-size ")[1].split()[0])
    assert 20 <= fits <= 28
    assert plan_run(MODELS["yolo"], 3, 64, fits, training=True, num_images=64).total <= limit * 1.05
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "options, text",
    [
        ({"image_size": 8192}, "needs at least 25.8 GB (its batch of 32 images 25.8 GB"),
        ({"train_images": 10**11}, "data index 1.6 TB"),
    ],
)
def test_absurd_sizes_are_refused_without_a_probe(monkeypatch, tmp_path, options, text):
    monkeypatch.setenv(memory_plan.ENV_LIMIT, "16G")
    monkeypatch.setattr(
        memory_plan, "_probe", lambda *a: pytest.fail("probed a plan the batch alone rules out")
    )
    with pytest.raises(
        UsageError, match="lower --batch-size, --image-size or --train-images"
    ) as refusal:
        train_model("localizer", "shapes", tmp_path, progress=False, **options)
    assert text in str(refusal.value)


def test_weights_that_grow_with_the_image_are_counted():
    """The localizer's fully connected neck grows with the image's area; the plan's weights
    (x4 in training) are the model's own at 256, a size never built by the probe."""
    planned = plan_run(MODELS["localizer"], 3, 256, 1, training=True).weights
    built = sum(p.data.nbytes for p in MODELS["localizer"].tiny(3, 256).parameters())
    assert planned == 4 * built


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1500", 1500),
        ("512M", 512 * 2**20),
        ("2G", 2 * 2**30),
        ("2GiB", 2 * 2**30),
        ("1.5k", 1536),
        (" 3T ", 3 * 2**40),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text, "X") == expected


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "nanG", "G", "1e999"])
def test_parse_bytes_rejects(text):
    with pytest.raises(
        ValueError, match=r"X must be a positive number of bytes such as 2G or 512M, got "
    ):
        parse_bytes(text, "X")


def test_bad_limit_variable_is_named(monkeypatch):
    monkeypatch.setenv(memory_plan.ENV_LIMIT, "plenty")
    with pytest.raises(
        ValueError, match="MINIVISION_MEMORY_LIMIT must be a positive number of bytes"
    ):
        memory_plan.available_memory("cpu")
