"""DataLoader: every sample once per epoch, reproducible shuffling, collate formats."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision.data import (
    DataLoader,
    Dataset,
    Shapes,
    Subset,
    default_collate,
    detection_collate,
    segmentation_collate,
)


class Numbered(Dataset):
    """Sample i is (a (1, 2, 2) image filled with i, {"id": i})."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def load(self, index):
        return np.full((1, 2, 2), index, np.float32), {"id": index}


def ids_of(loader):
    return [[t["id"] for t in targets] for _, targets in loader]


@given(
    n=st.integers(0, 23),
    batch_size=st.integers(1, 7),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_every_sample_once_per_epoch(n, batch_size, shuffle, drop_last, seed):
    loader = DataLoader(
        Numbered(n), batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    for _ in range(2):
        batches = ids_of(loader)
        assert len(batches) == len(loader)
        assert all(len(b) == batch_size for b in batches[:-1])
        seen = [i for b in batches for i in b]
        if drop_last:
            assert len(seen) == n - n % batch_size and len(set(seen)) == len(seen)
            assert all(len(b) == batch_size for b in batches)
        else:
            assert sorted(seen) == list(range(n))
        if not shuffle:
            assert seen == list(range(len(seen)))


def test_len_counts_batches():
    assert len(DataLoader(Numbered(10), batch_size=3)) == 4
    assert len(DataLoader(Numbered(10), batch_size=3, drop_last=True)) == 3
    assert len(DataLoader(Numbered(2), batch_size=3, drop_last=True)) == 0


def test_shuffle_differs_per_epoch_and_reproduces_per_seed():
    first = DataLoader(Numbered(20), batch_size=20, shuffle=True, seed=7)
    epochs = [ids_of(first)[0] for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    again = DataLoader(Numbered(20), batch_size=20, shuffle=True, seed=7)
    assert [ids_of(again)[0] for _ in range(3)] == epochs
    other = DataLoader(Numbered(20), batch_size=20, shuffle=True, seed=8)
    assert ids_of(other)[0] != epochs[0]


def test_set_epoch_replays_an_epoch_like_a_resumed_run():
    straight = DataLoader(Numbered(12), batch_size=4, shuffle=True, seed=3)
    orders = [ids_of(straight) for _ in range(3)]
    resumed = DataLoader(Numbered(12), batch_size=4, shuffle=True, seed=3)
    resumed.set_epoch(2)
    assert ids_of(resumed) == orders[2]
    resumed.set_epoch(1)
    assert ids_of(resumed) == orders[1]
    assert resumed.epoch == 2


def test_unseeded_loader_still_replays_its_own_epochs():
    loader = DataLoader(Numbered(30), batch_size=30, shuffle=True)
    first = ids_of(loader)
    loader.set_epoch(0)
    assert ids_of(loader) == first


def test_detection_batch_format_with_zero_boxes():
    empty = (
        np.zeros((3, 4, 4), np.float32),
        {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)},
    )
    full = (
        np.ones((3, 4, 4), np.float32),
        {"boxes": np.array([[0, 0, 2, 2], [1, 1, 4, 3]], np.float32), "labels": np.array([1, 3])},
    )
    for collate in (detection_collate, default_collate):
        images, targets = collate([empty, full])
        assert (
            isinstance(images, mv.Tensor)
            and images.shape == (2, 3, 4, 4)
            and images.dtype == np.float32
        )
        np.testing.assert_array_equal(images.numpy()[1], 1.0)
        assert targets[0]["boxes"].shape == (0, 4) and targets[1]["boxes"].shape == (2, 4)
        assert targets[1]["labels"].tolist() == [1, 3]


def test_loader_over_shapes_with_zero_objects():
    data = Shapes(5, image_size=16, min_objects=0, max_objects=0)
    images, targets = next(iter(DataLoader(data, batch_size=5)))
    assert images.shape == (5, 3, 16, 16)
    assert all(t["boxes"].shape == (0, 4) and t["masks"].shape == (0, 16, 16) for t in targets)


def test_segmentation_collate_stacks_semantic_maps():
    data = Shapes(3, image_size=16)
    images, semantic = segmentation_collate([data[i] for i in range(3)])
    assert (
        images.shape == (3, 3, 16, 16)
        and semantic.shape == (3, 16, 16)
        and semantic.dtype == np.int64
    )
    np.testing.assert_array_equal(semantic.numpy()[2], data[2][1]["semantic"])
    with pytest.raises(ValueError, match=r"needs target\['semantic'\]; samples \[0\] have none"):
        segmentation_collate([(np.zeros((3, 2, 2)), {})])


def test_default_collate_stacks_numbers_and_arrays():
    images, labels = default_collate([(np.zeros((2, 2)), 1), (np.ones((2, 2)), 0)])
    assert images.dtype == np.float32 and labels.dtype == np.int64 and labels.tolist() == [1, 0]


def test_subset_and_custom_collate():
    subset = Subset(Numbered(10), [7, 2, -1])
    assert len(subset) == 3 and subset[-1][1]["id"] == 9
    loader = DataLoader(
        subset, batch_size=2, collate_fn=lambda samples: [t["id"] for _, t in samples]
    )
    assert list(loader) == [[7, 2], [9]]
    with pytest.raises(IndexError, match="index 10 is out of range for a dataset of length 10"):
        Subset(Numbered(10), [10])


def test_bad_loader_arguments_and_batches():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        DataLoader(Numbered(3), batch_size=0)
    with pytest.raises(TypeError, match="dataset must have __len__ and __getitem__, got int"):
        DataLoader(5)
    with pytest.raises(TypeError, match="seed must be a non-negative integer, got 'a'"):
        DataLoader(Numbered(3), seed="a")
    with pytest.raises(ValueError, match="epoch must be a non-negative integer, got -1"):
        DataLoader(Numbered(3)).set_epoch(-1)
    mixed = [(np.zeros((3, 4, 4)), {}), (np.zeros((3, 5, 4)), {})]
    shapes = r"\[\(3, 4, 4\), \(3, 5, 4\)\]"
    with pytest.raises(
        ValueError, match=r"cannot batch images: samples have different shapes " + shapes
    ):
        detection_collate(mixed)
    with pytest.raises(
        TypeError, match="sample 1 of the batch must be an .image, target dict. pair, got ndarray"
    ):
        detection_collate([mixed[0], np.zeros(3)])
    with pytest.raises(NotImplementedError, match="must implement __len__"):
        len(Dataset())
