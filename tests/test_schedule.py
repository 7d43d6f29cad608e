"""The cubic sparsity schedule against a hand-computed table."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pst_jax import cubic_sparsity


def test_default_schedule_table():
    # T=100, s_final=0.9, w_i=0.1, w_f=0.3: dense through step 10, cubic ramp over 60 steps, 0.9 after 70.
    s = cubic_sparsity(100)
    table = {
        0: 0.0,
        10: 0.0,
        11: 0.9 - 0.9 * (1 - 1 / 60) ** 3,
        25: 0.9 - 0.9 * 0.75**3,
        40: 0.9 - 0.9 * 0.5**3,  # 0.7875
        55: 0.9 - 0.9 * 0.25**3,
        70: 0.9,
        71: 0.9,
        99: 0.9,
        100: 0.9,
    }
    for step, want in table.items():
        np.testing.assert_allclose(float(s(step)), want, rtol=1e-6, err_msg=str(step))


def test_initial_sparsity_and_jit_agree():
    s = cubic_sparsity(1000, final_sparsity=0.75, initial_sparsity=0.25, initial_warmup=0.0, final_warmup=0.5)
    steps = jnp.arange(0, 1001, 50)
    got = jax.jit(jax.vmap(s))(steps)
    want = [0.75 + (0.25 - 0.75) * (1 - min(t / 500, 1.0)) ** 3 if t <= 500 else 0.75 for t in range(0, 1001, 50)]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    assert float(s(0)) == 0.25 and float(s(501)) == 0.75


def test_monotone_and_bounded():
    s = cubic_sparsity(317, final_sparsity=0.97)
    values = np.asarray(jax.vmap(s)(jnp.arange(318)))
    assert np.all(np.diff(values) >= 0) and values[0] == 0.0 and values[-1] == np.float32(0.97)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(final_sparsity=1.0), "final_sparsity must be in"),
        (dict(initial_sparsity=-0.1), "initial_sparsity must be in"),
        (dict(initial_warmup=0.8, final_warmup=0.3), "must be <= 1"),
        (dict(total_steps=0), "total_steps must be >= 1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cubic_sparsity(**{"total_steps": 10, **kwargs})
