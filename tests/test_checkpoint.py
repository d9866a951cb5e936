"""read_checkpoint checks the JSON info's schema: a foreign or damaged checkpoint is a
one-line ValueError naming the file and the key, never an error from deep inside."""

import json

import numpy as np
import pytest

import minivision as mv
from minivision import nn, optim
from minivision.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint as training writes it: model, Adam state with a step, a schedule, history."""
    mv.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = optim.Adam(model.parameters(), lr=0.1)
    sched = optim.StepLR(opt, 1)
    model(mv.ones(4, 3)).sum().backward()
    opt.step()
    sched.step()
    path = tmp_path / "ckpt.npz"
    save_checkpoint(
        path,
        model,
        opt,
        sched,
        epoch=1,
        history=[{"epoch": 1, "loss": 0.5, "lr": 0.1}],
        meta={"model": "linear"},
    )
    return path


def _rewrite(path, change_info=None, change_arrays=None):
    """Rewrite the checkpoint with its JSON info (and arrays) changed."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if change_info is not None:
        arrays["meta.json"] = np.array(
            json.dumps(change_info(json.loads(str(arrays["meta.json"]))))
        )
    if change_arrays is not None:
        change_arrays(arrays)
    np.savez(path, **arrays)


def _set(key, value):
    def change(info):
        info[key] = value
        return info

    return change


def _set_optimizer(key, value):
    def change(info):
        info["optimizer"][key] = value
        return info

    return change


def test_unchanged_rewrite_loads_as_written(checkpoint):
    _, optimizer_state, before = read_checkpoint(checkpoint)
    _rewrite(checkpoint, change_info=lambda info: info)
    _, _, after = read_checkpoint(checkpoint)
    assert after == before and before["epoch"] == 1 and before["meta"] == {"model": "linear"}
    assert (
        optimizer_state["state"][0]["step"] == 1
        and optimizer_state["param_groups"][0]["initial_lr"] == 0.1
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda info: [info], r"meta\.json must be a JSON object, got \[\{"),
        (lambda info: "text", r"meta\.json must be a JSON object, got 'text'"),
        (
            lambda info: {k: v for k, v in info.items() if k != "rng"},
            r"meta\.json must be an object with the key 'rng'",
        ),
        (_set("epoch", -1), r"meta\.json\['epoch'\] must be a non-negative integer, got -1"),
        (_set("epoch", 1.5), r"meta\.json\['epoch'\] must be a non-negative integer, got 1\.5"),
        (_set("epoch", True), r"meta\.json\['epoch'\] must be a non-negative integer, got True"),
        (_set("history", {}), r"meta\.json\['history'\] must be a list of objects, got \{\}"),
        (
            _set("history", [{"loss": 1.0}, 3]),
            r"meta\.json\['history'\]\[1\] must be an object of numbers, got 3",
        ),
        (
            _set("history", [{"loss": "low"}]),
            r"meta\.json\['history'\]\[0\]\['loss'\] must be a number, got 'low'",
        ),
        (_set("meta", ["model"]), r"meta\.json\['meta'\] must be an object, got \['model'\]"),
        (
            _set("rng", [1, 2]),
            r"meta\.json\['rng'\] must be a generator state from backend\.get_rng_state\(\), "
            r"got \[1, 2\]",
        ),
        (
            _set("rng", {"seed": "zero", "numpy": {}}),
            r"meta\.json\['rng'\] must be a generator state",
        ),
        (
            _set("rng", {"seed": 0, "numpy": {"bit_generator": "MT19937"}}),
            r"meta\.json\['rng'\] must be a generator state",
        ),
        (
            _set("optimizer", []),
            r"meta\.json\['optimizer'\] must be an object with 'param_groups' and 'scalars', got \[\]",
        ),
        (
            _set_optimizer("param_groups", {}),
            r"meta\.json\['optimizer'\]\['param_groups'\] must be a list of objects",
        ),
        (
            _set_optimizer("param_groups", [0.1]),
            r"meta\.json\['optimizer'\]\['param_groups'\]\[0\] must be an object",
        ),
        (
            _set_optimizer("scalars", []),
            r"meta\.json\['optimizer'\]\['scalars'\] must be an object, got \[\]",
        ),
        (
            _set_optimizer("scalars", {"first": {}}),
            r"meta\.json\['optimizer'\]\['scalars'\] must be keyed by parameter indices, got 'first'",
        ),
        (
            _set_optimizer("scalars", {"0": 5}),
            r"meta\.json\['optimizer'\]\['scalars'\]\['0'\] must be an object, got 5",
        ),
        (
            _set("scheduler_epoch", "1"),
            r"meta\.json\['scheduler_epoch'\] must be an integer, got '1'",
        ),
    ],
)
def test_info_of_the_wrong_shape_is_named(checkpoint, change, message):
    _rewrite(checkpoint, change_info=change)
    with pytest.raises(ValueError, match=r"ckpt\.npz: " + message) as excinfo:
        read_checkpoint(checkpoint)
    assert "\n" not in str(excinfo.value)


def test_long_values_are_shortened_to_one_line(checkpoint):
    _rewrite(checkpoint, change_info=_set("meta", "x\n" * 1000))
    with pytest.raises(
        ValueError, match=r"\['meta'\] must be an object, got 'x\\nx\\n.*\.\.\.$"
    ) as excinfo:
        read_checkpoint(checkpoint)
    assert len(str(excinfo.value)) < len(str(checkpoint)) + 120


def test_meta_entry_that_is_not_json_text(checkpoint):
    def not_json(arrays):
        arrays["meta.json"] = np.array("{epoch: 1")

    _rewrite(checkpoint, change_arrays=not_json)
    with pytest.raises(
        ValueError, match=r"ckpt\.npz: meta\.json is not valid JSON \(Expecting property name"
    ):
        read_checkpoint(checkpoint)

    def numbers(arrays):
        arrays["meta.json"] = np.arange(3)

    _rewrite(checkpoint, change_arrays=numbers)
    with pytest.raises(
        ValueError,
        match=r"ckpt\.npz: entry 'meta\.json' must be one text string, got "
        r"'int64 array of shape \(3,\)'",
    ):
        read_checkpoint(checkpoint)


def test_optimizer_entry_with_a_bad_name(checkpoint):
    def rename(arrays):
        arrays["optimizer/first/exp_avg"] = arrays.pop("optimizer/0/exp_avg")

    _rewrite(checkpoint, change_arrays=rename)
    with pytest.raises(
        ValueError,
        match=r"ckpt\.npz: entry 'optimizer/first/exp_avg' must be named "
        r"optimizer/<parameter index>/<name>",
    ):
        read_checkpoint(checkpoint)


def test_bad_info_leaves_the_generator_untouched(checkpoint):
    """The rng state is checked on a spare generator, before anything is restored."""
    _rewrite(
        checkpoint,
        change_info=_set("rng", {"seed": 0, "numpy": {"bit_generator": "PCG64", "state": {}}}),
    )
    model = nn.Linear(3, 2)
    mv.manual_seed(7)
    expected = mv.rand(3).numpy()
    mv.manual_seed(7)
    with pytest.raises(ValueError, match=r"\['rng'\] must be a generator state"):
        load_checkpoint(checkpoint, model)
    np.testing.assert_array_equal(mv.rand(3).numpy(), expected)


def test_checkpoint_limit_is_passed_to_load(checkpoint):
    with pytest.raises(
        ValueError, match=r"ckpt\.npz' would take .* over the limit of max_bytes=100;"
    ):
        read_checkpoint(checkpoint, max_bytes=100)
