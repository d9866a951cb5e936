"""batch_norm in training and evaluation as an op: PyTorch parity including running stats, and
bad input. Gradchecks and the reference's own tests are in tests/reference/test_norm.py."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision import functional as F
from tests.helpers import assert_close, check_parity, torch_or_skip


@given(
    n=st.integers(2, 4),
    c=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 3), max_size=2),
    training=st.booleans(),
    affine=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_batch_norm_matches_torch_with_running_stats(n, c, spatial, training, affine, seed):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    x = 2 + 3 * rng.standard_normal((n, c, *spatial))
    mean0, var0 = rng.standard_normal(c), rng.random(c) + 0.5
    mv_stats = [mean0.copy(), var0.copy()]
    th_stats = [torch.tensor(mean0), torch.tensor(var0)]
    arrays = [x] + ([rng.standard_normal(c), rng.standard_normal(c)] if affine else [])
    check_parity(
        lambda t, *wb: F.batch_norm(t, *mv_stats, *wb, training=training, momentum=0.3),
        lambda t, *wb: torch.nn.functional.batch_norm(
            t, *th_stats, *wb, training=training, momentum=0.3
        ),
        arrays,
        rng,
    )
    assert_close(mv_stats[0], th_stats[0], what="running_mean")
    assert_close(mv_stats[1], th_stats[1], what="running_var")


def test_batch_norm_bad_input():
    x = mv.tensor(np.ones((2, 3, 4, 4)))
    with pytest.raises(
        ValueError, match=r"running_mean must have shape \(3,\) for 3 channels, got \(2,\)"
    ):
        F.batch_norm(x, np.zeros(2), np.ones(3), training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(mv.tensor(np.ones((1, 3))), np.zeros(3), np.ones(3), training=True)
    with pytest.raises(ValueError, match="needs running_mean and running_var"):
        F.batch_norm(x, None, None, training=False)
