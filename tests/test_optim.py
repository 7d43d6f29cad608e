"""Learning-rate schedule and the partitioned optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pst_jax import Method, init_train_state, learning_rate_schedule, make_optimizer, methods, param_labels


def test_linear_decay_and_warmup():
    lr = learning_rate_schedule(1e-3, 100)
    np.testing.assert_allclose([float(lr(t)) for t in (0, 25, 100)], [1e-3, 7.5e-4, 0.0], rtol=1e-6)
    warm = learning_rate_schedule(1e-3, 100, warmup_steps=20)
    np.testing.assert_allclose(
        [float(warm(t)) for t in (0, 10, 20, 60, 100)], [0.0, 5e-4, 1e-3, 5e-4, 0.0], rtol=1e-6, atol=1e-12
    )


def test_labels_and_groups_with_their_learning_rates():
    tree = {"pst": {"m": {"U": jnp.ones((2, 1))}}, "head": {"h/kernel": jnp.ones(3)}}
    assert param_labels(tree, ("pst", "head")) == {"pst": {"m": {"U": "pst"}}, "head": {"h/kernel": "head"}}
    tx = make_optimizer(("pst", "head"), 0.1, total_steps=10, head_learning_rate=0.01)
    state = tx.init(tree)
    grads = jax.tree.map(jnp.ones_like, tree)
    updates, _ = tx.update(grads, state, tree)
    # Adam's first step moves each weight by -lr (sign of the gradient).
    np.testing.assert_allclose(updates["pst"]["m"]["U"], -0.1, rtol=1e-5)
    np.testing.assert_allclose(updates["head"]["h/kernel"], -0.01, rtol=1e-5)
    buffers = [x.size for x in jax.tree.leaves(state) if x.ndim > 0]
    assert sum(buffers) == 2 * (2 + 3)  # mu and nu for pst and head only


def _with_extra_group(method: Method, group: str, declare: bool) -> Method:
    """``method`` whose init also returns a trainable ``group``, declared in its groups or not."""

    def init(key, params):
        trainable, frozen = method.init(key, params)
        return {**trainable, group: {"x": jnp.ones(2)}}, frozen

    groups = (*method.groups, group) if declare else method.groups
    return method._replace(name=f"{method.name}+{group}", init=init, groups=groups)


def test_a_declared_group_without_optimizer_entry_fails_in_make_optimizer():
    method = _with_extra_group(methods.dense(), "gates", declare=True)
    with pytest.raises(ValueError, match="'gates'.*no optimizer entry") as error:
        make_optimizer(method, 0.1, total_steps=10)
    assert "dense+gates" in str(error.value)


def test_an_undeclared_trainable_group_fails_at_init_never_frozen():
    method = _with_extra_group(methods.dense(), "other", declare=False)
    tx = make_optimizer(method, 0.1, total_steps=10)  # declares only "weights": fine so far
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="'other'.*not declared by method 'dense\\+other'"):
        init_train_state(jax.random.key(0), params, method, tx)
    with pytest.raises(ValueError, match="'other'"):
        param_labels({"weights": {"w": jnp.ones(3)}, "other": {"x": jnp.ones(2)}}, ("weights",))
