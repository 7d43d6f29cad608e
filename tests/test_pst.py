"""masked_kernel against an independent NumPy implementation of PST_METHOD.md (value and gradients)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pst_jax import PSTConfig, init_factors, masked_kernel


def numpy_pst(w0, f, sparsity, g, beta, alpha1, alpha2):
    """Forward value and gradients of sum(g * (M * W~)), derived by hand, in float64."""
    w0, g = w0.astype(np.float64), g.astype(np.float64)
    U, V, A, B, R, C = (f[k].astype(np.float64) for k in "UVABRC")
    w = w0 + beta * U @ V
    s = np.abs(w) + alpha1 * A @ B + alpha2 * (C[:, None] + R[None, :])
    k = math.floor(sparsity * s.size)
    order = np.argsort(s.ravel(), kind="stable")
    m = np.ones(s.size)
    m[order[:k]] = 0.0
    m = m.reshape(s.shape)
    # d(M*W~) = g.  W~ gets g*M directly, the score gets g*W~ (straight-through), and the score's
    # |W~| term sends dS*sign(W~) back to W~.
    d_s = g * w
    d_w = g * m + d_s * np.sign(w)
    grads = {
        "U": beta * d_w @ V.T,
        "V": beta * U.T @ d_w,
        "A": alpha1 * d_s @ B.T,
        "B": alpha1 * A.T @ d_s,
        "R": alpha2 * d_s.sum(axis=0),
        "C": alpha2 * d_s.sum(axis=1),
    }
    return m * w, m, grads


def random_factors(rng, d_in, d_out, config):
    """Non-zero factors of the right shapes (the init's zeros would hide terms)."""
    rw, rm = config.weight_rank, config.mask_rank
    shapes = {"U": (d_in, rw), "V": (rw, d_out), "A": (d_in, rm), "B": (rm, d_out), "R": (d_out,), "C": (d_in,)}
    return {k: (0.1 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}


CONFIGS = [PSTConfig(), PSTConfig(weight_rank=3, mask_rank=5, beta=0.5, alpha1=2.0, alpha2=0.7)]


@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("config", CONFIGS, ids=["default", "scaled"])
def test_value_and_gradients_match_numpy(shape, sparsity, config):
    rng = np.random.default_rng(hash((shape, sparsity)) % 2**32)
    w0 = rng.standard_normal(shape).astype(np.float32)
    factors = random_factors(rng, *shape, config)
    g = rng.standard_normal(shape).astype(np.float32)
    want_value, want_mask, want_grads = numpy_pst(w0, factors, sparsity, g, config.beta, config.alpha1, config.alpha2)

    def objective(f, s):
        return jnp.sum(g * masked_kernel(jnp.asarray(w0), f, s, config))

    value = jax.jit(masked_kernel, static_argnums=3)(w0, factors, sparsity, config)
    grads = jax.jit(jax.grad(objective))(factors, jnp.float32(sparsity))

    np.testing.assert_array_equal(np.asarray(value) != 0, want_mask != 0)
    assert int((np.asarray(value) == 0).sum()) == math.floor(sparsity * w0.size)
    chex.assert_trees_all_close(value, want_value.astype(np.float32), rtol=1e-5, atol=1e-6)
    scale = {k: float(np.abs(v).max()) for k, v in want_grads.items()}
    for name in "UVABRC":
        chex.assert_trees_all_close(
            grads[name],
            want_grads[name].astype(np.float32),
            rtol=1e-5,
            atol=1e-5 * scale[name],
            custom_message=f"gradient of {name}",
        )


def test_init_is_exactly_pretrained_and_magnitude():
    w0 = np.random.default_rng(0).standard_normal((12, 20)).astype(np.float32)
    factors = init_factors(jax.random.key(1), 12, 20)
    np.testing.assert_array_equal(np.asarray(masked_kernel(w0, factors, 0.0)), w0)
    pruned = np.asarray(masked_kernel(w0, factors, 0.5)) == 0
    smallest = np.argsort(np.abs(w0).ravel(), kind="stable")[: w0.size // 2]
    want = np.zeros(w0.size, bool)
    want[smallest] = True
    np.testing.assert_array_equal(pruned.ravel(), want)


@pytest.mark.parametrize("init_std,want", [(None, {"V": 0.5, "B": 1.0}), (1.0, {"V": 1.0, "B": 1.0})])
def test_init_factor_shapes_and_distribution(init_std, want):
    """V is normal with std 1 / sqrt(weight_rank) by default, or ``weight_init_std`` (the authors' 1.0); B is
    standard normal."""
    f = init_factors(jax.random.key(0), 300, 200, PSTConfig(weight_rank=4, mask_rank=6, weight_init_std=init_std))
    chex.assert_shape(
        [f["U"], f["V"], f["A"], f["B"], f["R"], f["C"]], [(300, 4), (4, 200), (300, 6), (6, 200), (200,), (300,)]
    )
    for zero in "UARC":
        assert not np.any(np.asarray(f[zero])), zero
    for normal in "VB":
        x = np.asarray(f[normal])
        assert abs(x.mean()) < 0.1 * want[normal] and abs(x.std() / want[normal] - 1.0) < 0.05, normal


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_weight_init_std_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="weight_init_std"):
        PSTConfig(weight_init_std=bad)


def test_sparsity_outside_range_is_a_clear_error():
    w0, f = jnp.ones((4, 4)), init_factors(jax.random.key(0), 4, 4)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
            masked_kernel(w0, f, bad)


def test_traced_sparsity_does_not_retrace():
    w0 = jax.random.normal(jax.random.key(0), (16, 8))
    f = init_factors(jax.random.key(1), 16, 8)
    fn = jax.jit(chex.assert_max_traces(lambda s: masked_kernel(w0, f, s), n=1))
    for s in (0.0, 0.25, 0.5, 0.75):
        assert int((fn(jnp.float32(s)) == 0).sum()) == math.floor(s * 128)
