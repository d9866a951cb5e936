"""batch_norm in training and evaluation: gradcheck, PyTorch parity including running stats."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision import functional as F
from tests.helpers import assert_close, check_parity, torch_or_skip


@given(n=st.integers(2, 4), c=st.integers(1, 3), spatial=st.lists(st.integers(1, 3), max_size=2),
       training=st.booleans(), affine=st.booleans(), seed=st.integers(0, 2**16))
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
        lambda t, *wb: torch.nn.functional.batch_norm(t, *th_stats, *wb, training=training, momentum=0.3),
        arrays, rng,
    )
    assert_close(mv_stats[0], th_stats[0], what="running_mean")
    assert_close(mv_stats[1], th_stats[1], what="running_var")


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(training, rng):
    x = mv.Tensor(rng.standard_normal((3, 2, 2, 2)), requires_grad=True)
    w = mv.Tensor(rng.standard_normal(2), requires_grad=True)
    b = mv.Tensor(rng.standard_normal(2), requires_grad=True)
    mean, var = np.zeros(2), np.ones(2) * 1.5
    mv.gradcheck(lambda t, ww, bb: F.batch_norm(t, mean, var, ww, bb, training=training), [x, w, b])


def test_batch_norm_bad_input():
    x = mv.tensor(np.ones((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\) for 3 channels, got \(2,\)"):
        F.batch_norm(x, np.zeros(2), np.ones(3), training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(mv.tensor(np.ones((1, 3))), np.zeros(3), np.ones(3), training=True)
    with pytest.raises(ValueError, match="needs running_mean and running_var"):
        F.batch_norm(x, None, None, training=False)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 2)])
def test_numba_passes_equal_the_array_formulas_of_the_gpu_path(shape, dtype, rng):
    """Each CPU kernel of batch norm against its ``_xp`` twin (the CuPy path) run on NumPy."""
    from minivision.functional import norm

    c = shape[1]
    x, grad = (rng.standard_normal(shape) * 3 + 1).astype(dtype), rng.standard_normal(shape).astype(dtype)
    mean, inv_std, scale, shift, mean_g, mean_gx = (rng.standard_normal(c).astype(dtype) for _ in range(6))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    pairs = [
        (norm._moments(x), norm._moments_xp(x)),
        ((norm._affine(x, scale, shift),), (norm._affine_xp(x, scale, shift),)),
        (norm._gradient_sums(grad, x, mean, inv_std), norm._gradient_sums_xp(grad, x, mean, inv_std)),
        ((norm._input_gradient(grad, x, mean, inv_std, scale, mean_g, mean_gx),),
         (norm._input_gradient_xp(grad, x, mean, inv_std, scale, mean_g, mean_gx),)),
    ]
    for numba_values, xp_values in pairs:
        for a, b in zip(numba_values, xp_values):
            assert a.dtype == dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, **tol)
