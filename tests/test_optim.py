"""Learning-rate schedule and the partitioned optimizer."""

import jax
import jax.numpy as jnp
import numpy as np

from pst_jax import learning_rate_schedule, make_optimizer, param_labels


def test_linear_decay_and_warmup():
    lr = learning_rate_schedule(1e-3, 100)
    np.testing.assert_allclose([float(lr(t)) for t in (0, 25, 100)], [1e-3, 7.5e-4, 0.0], rtol=1e-6)
    warm = learning_rate_schedule(1e-3, 100, warmup_steps=20)
    np.testing.assert_allclose(
        [float(warm(t)) for t in (0, 10, 20, 60, 100)], [0.0, 5e-4, 1e-3, 5e-4, 0.0], rtol=1e-6, atol=1e-12
    )


def test_labels_and_frozen_group_is_zeroed():
    tree = {"pst": {"m": {"U": jnp.ones((2, 1))}}, "head": {"h/kernel": jnp.ones(3)}, "other": {"x": jnp.ones(2)}}
    assert param_labels(tree) == {"pst": {"m": {"U": "pst"}}, "head": {"h/kernel": "head"}, "other": {"x": "frozen"}}
    tx = make_optimizer(0.1, total_steps=10, head_learning_rate=0.01)
    state = tx.init(tree)
    grads = jax.tree.map(jnp.ones_like, tree)
    updates, _ = tx.update(grads, state, tree)
    # Adam's first step moves each weight by -lr (sign of the gradient); the frozen group not at all.
    np.testing.assert_allclose(updates["pst"]["m"]["U"], -0.1, rtol=1e-5)
    np.testing.assert_allclose(updates["head"]["h/kernel"], -0.01, rtol=1e-5)
    np.testing.assert_array_equal(updates["other"]["x"], 0.0)
    buffers = [x.size for x in jax.tree.leaves(state) if x.ndim > 0]
    assert sum(buffers) == 2 * (2 + 3)  # mu and nu for pst and head only
