"""Whole-model functions: effective params at init, masks, export."""

import math

import chex
import jax
import numpy as np
import pytest

from pst_jax import (
    BERT_RULES,
    GPT2_RULES,
    ROBERTA_RULES,
    export_model,
    init_pst,
    kernel_sparsity,
    make_plan,
    masks,
    merge,
    methods,
    read_matrix,
)
from pst_jax.core.rules import flatten

MODELS = [("bert", BERT_RULES), ("roberta", ROBERTA_RULES), ("gpt2", GPT2_RULES)]


def export(params, factors, sparsity, plan):
    """PST's export of ``params`` with these factors (every pretrained weight frozen, the head included)."""
    return export_model({"pst": factors, "head": {}}, flatten(params), sparsity, methods.pst(plan, train_head=False))


@pytest.mark.parametrize("name,rules", MODELS)
def test_init_is_exactly_pretrained_at_sparsity_zero(request, name, rules):
    model = request.getfixturevalue(name)
    plan = make_plan(model.params, rules)
    merged = jax.jit(lambda p, f: merge(p, f, 0.0, plan))(model.params, init_pst(jax.random.key(0), plan))
    chex.assert_trees_all_equal(merged, model.params)


@pytest.mark.parametrize("name,rules", MODELS)
def test_init_mask_is_magnitude_pruning_of_w0(request, name, rules):
    model = request.getfixturevalue(name)
    plan = make_plan(model.params, rules)
    flat = flatten(model.params)
    got = jax.jit(lambda p, f: masks(p, f, 0.5, plan))(model.params, init_pst(jax.random.key(0), plan))
    for m in plan.matrices:
        w0 = np.abs(np.asarray(read_matrix(flat[m.path], m))).ravel()
        want = np.ones(w0.size)
        want[np.argsort(w0, kind="stable")[: w0.size // 2]] = 0
        np.testing.assert_array_equal(np.asarray(got[m.name]).ravel(), want, err_msg=m.name)


@pytest.mark.parametrize("name,rules", MODELS)
def test_export_has_target_sparsity_and_leaves_the_rest(request, name, rules):
    model = request.getfixturevalue(name)
    plan = make_plan(model.params, rules)
    factors = jax.tree.map(
        lambda x: x + 0.01 * jax.random.normal(jax.random.key(1), x.shape), init_pst(jax.random.key(0), plan)
    )
    out = export(model.params, factors, 0.75, plan)
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(out))
    assert jax.tree.structure(out) == jax.tree.structure(model.params)
    for m in plan.matrices:
        zeros = np.sum(read_matrix(flatten(out)[m.path], m) == 0)
        assert zeros == math.floor(0.75 * m.numel), m.name
    assert set(kernel_sparsity(out, plan).values()) == {0.75}
    sparse_paths = {m.path for m in plan.matrices}
    for path, value in flatten(model.params).items():
        if path not in sparse_paths:
            np.testing.assert_array_equal(flatten(out)[path], value, err_msg=path)


def test_exported_params_run_in_the_model(bert):
    plan = make_plan(bert.params, BERT_RULES)
    factors = init_pst(jax.random.key(0), plan)
    ids = np.arange(3, 19, dtype=np.int32).reshape(2, 8)
    merged = jax.jit(lambda p, f: merge(p, f, 0.5, plan))(bert.params, factors)
    want = bert(ids, params=merged).logits
    got = bert(ids, params=export(bert.params, factors, 0.5, plan)).logits
    chex.assert_trees_all_close(got, want, rtol=1e-6)


@pytest.mark.parametrize("name,rules", [MODELS[0], MODELS[2]])
def test_merge_gradient_equals_autodiff_of_each_masked_kernel(request, name, rules):
    """merge (masks of same-shape matrices selected together, GPT-2's fused c_attn split) against
    pst.masked_kernel matrix by matrix, whose values and gradients tests/test_pst.py checks against NumPy."""
    from pst_jax.core.pst import masked_kernel

    model = request.getfixturevalue(name)
    plan = make_plan(model.params, rules)
    rng = np.random.default_rng(0)
    factors = jax.tree.map(
        lambda x: jax.numpy.asarray(rng.standard_normal(x.shape), x.dtype), init_pst(jax.random.key(0), plan)
    )
    flat = flatten(model.params)
    weights = {m.path: jax.numpy.asarray(rng.standard_normal(flat[m.path].shape), np.float32) for m in plan.matrices}

    def via_merge(f):
        merged = flatten(merge(model.params, f, 0.6, plan))
        return sum(jax.numpy.sum(weights[p] * merged[p] ** 2) for p in weights)

    def via_each(f):
        total = 0.0
        for path, ms in plan.by_kernel().items():
            kernels = [masked_kernel(read_matrix(flat[path], m), f[m.name], 0.6) for m in ms]
            joined = kernels[0] if len(kernels) == 1 else jax.numpy.concatenate(kernels, axis=1)
            kernel = joined if ms[0].layout == "in_out" else joined.T
            total = total + jax.numpy.sum(weights[path] * kernel**2)
        return total

    got_value, got = jax.jit(jax.value_and_grad(via_merge))(factors)
    want_value, want = jax.jit(jax.value_and_grad(via_each))(factors)
    np.testing.assert_allclose(got_value, want_value, rtol=1e-5)
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)
