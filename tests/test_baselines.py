"""Baselines: train steps, export sparsity, the trainable/frozen split, counts, gradients, LoRA's unmerged forward."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pst_jax import (
    BERT_RULES,
    GPT2_RULES,
    Matrix,
    Plan,
    PSTConfig,
    baselines,
    causal_lm_loss,
    classification_loss,
    count_parameters,
    export_model,
    init_train_state,
    jit_train_step,
    make_mesh,
    make_optimizer,
    make_plan,
    make_train_step,
    param_labels,
    shard_batch,
    trainable_parameters,
)
from pst_jax.core.rules import flatten, read_matrix
from tests import tiny

SPARSITY = 0.5
RANK = 4
ALPHA = 8.0  # scale 2, so a forgotten scale shows
FINAL_THRESHOLD = 0.1
FINAL_LAMBDA = 400.0
KEY = jax.random.key(0)


def make_method(name: str, plan: Plan):
    return {
        "magnitude": lambda: baselines.magnitude(plan),
        "movement": lambda: baselines.movement(plan),
        "soft_movement": lambda: baselines.soft_movement(
            plan, final_sparsity=SPARSITY, final_threshold=FINAL_THRESHOLD, final_lambda=FINAL_LAMBDA
        ),
        "lora": lambda: baselines.lora(plan, rank=RANK, alpha=ALPHA),
    }[name]()


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def hand_keep(scores, sparsity):
    """Keeps all but the floor(s * n) smallest scores (random floats: no ties)."""
    scores = np.asarray(scores)
    k = math.floor(sparsity * scores.size)
    return scores > np.sort(scores.ravel())[k - 1]


def bert_counts(config, rank):
    """Hand counts for tiny BERT: 4 (h x h) and 2 (h x i) matrices per layer, classifier head."""
    h, i, layers, labels = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_labels
    return {
        "planned": layers * (4 * h * h + 2 * h * i),
        "lora": layers * rank * (4 * (h + h) + 2 * (h + i)),
        "head": h * labels + labels,
    }


def gpt2_counts(config, rank):
    """Hand counts for tiny GPT-2: q, k, v, c_proj (n x n), c_fc (n x 4n), mlp c_proj (4n x n); tied LM head."""
    n, layers = config.n_embd, config.n_layer
    return {
        "planned": layers * (4 * n * n + 2 * n * 4 * n),
        "lora": layers * rank * (4 * (n + n) + 2 * (n + 4 * n)),
        "head": 0,
    }


MODELS = {"bert": (BERT_RULES, bert_counts), "gpt2": (GPT2_RULES, gpt2_counts)}


def setup_task(model_name, model):
    if model_name == "bert":
        return classification_loss(model), tiny.classification_batch(np.random.default_rng(0))
    return causal_lm_loss(model), tiny.lm_batch(np.random.default_rng(0))


def check_split_and_count(name, model, plan, trainable, frozen, hand):
    """The trainable/frozen split and the trainable count (three ways: leaves, helper, hand)."""
    all_paths = set(flatten(model.params))
    n_model = sum(x.size for x in jax.tree.leaves(model.params))
    if name == "lora":
        head = set(plan.paths("head"))
        assert set(trainable) == {"lora", "head"}
        assert set(trainable["head"]) == head and set(frozen) == all_paths - head  # no pretrained weight trained
        assert {n: (f["A"].shape, f["B"].shape) for n, f in trainable["lora"].items()} == {
            m.name: ((m.d_in, RANK), (RANK, m.d_out)) for m in plan.matrices
        }
        expected = hand["lora"] + hand["head"]
    else:
        assert frozen == {} and set(trainable["weights"]) == all_paths
        expected = n_model
        if name != "magnitude":
            assert {n: s.shape for n, s in trainable["scores"].items()} == {
                m.name: (m.d_in, m.d_out) for m in plan.matrices
            }
            expected += hand["planned"]
    assert sum(math.prod(x.shape) for x in jax.tree.leaves(trainable)) == expected
    assert trainable_parameters(name, model.params, plan, rank=RANK) == expected


@pytest.mark.parametrize("model_name", ["bert", "gpt2"])
@pytest.mark.parametrize("name", ["magnitude", "movement", "soft_movement", "lora"])
def test_split_and_trainable_count(request, model_name, name):
    model = request.getfixturevalue(model_name)
    rules, hand = MODELS[model_name]
    plan = make_plan(model.params, rules)
    method = make_method(name, plan)
    trainable, frozen = jax.eval_shape(method.init, KEY, model.params)  # shapes only
    assert set(trainable) == set(method.groups)  # each trainable group is declared, each declared one returned
    check_split_and_count(name, model, plan, trainable, frozen, hand(model.config, RANK))


def check_export(name, method, plan, trainable, frozen, params):
    """Pruning per matrix: exact for magnitude/movement, none for LoRA, 1[sigmoid(scores) > tau] for soft movement."""
    if name == "soft_movement":
        # Trained for a few steps the scores barely moved: give them a spread so the threshold bites.
        rng = np.random.default_rng(3)
        trainable = {**trainable, "scores": {n: rng.normal(-2.0, 1.0, s.shape) for n, s in trainable["scores"].items()}}
    exported = flatten(export_model(trainable, frozen, SPARSITY, method))
    source = {**frozen, **trainable.get("weights", {}), **trainable.get("head", {})}
    pruned = []
    for m in plan.matrices:
        w = read_matrix(np.asarray(source[m.path]), m)
        out = read_matrix(exported[m.path], m)
        if name in ("magnitude", "movement"):
            assert np.sum(out == 0) == math.floor(SPARSITY * m.numel), m.name
            np.testing.assert_array_equal(out[out != 0], w[out != 0])  # kept weights unchanged
        elif name == "soft_movement":
            # Exported at the schedule's final sparsity: the reference's final threshold applies.
            keep = sigmoid(trainable["scores"][m.name]) > FINAL_THRESHOLD
            np.testing.assert_array_equal(out, np.where(keep, w, 0.0), err_msg=m.name)
            pruned.append(1.0 - keep.mean())
        else:
            f = trainable["lora"][m.name]
            merged = w + (ALPHA / RANK) * np.asarray(f["A"], np.float64) @ np.asarray(f["B"], np.float64)
            np.testing.assert_allclose(out, merged, rtol=1e-5, atol=1e-6, err_msg=m.name)
    if pruned:
        print(f"soft movement at tau={FINAL_THRESHOLD}: {np.mean(pruned):.1%} pruned on average")
    if method.masks is not None:  # the masks a method reports are the ones its export applied
        masks = jax.jit(method.masks)(trainable, frozen, jnp.float32(SPARSITY))
        for m in plan.matrices:
            np.testing.assert_array_equal(read_matrix(exported[m.path], m) != 0, np.asarray(masks[m.name]) != 0)
    else:
        assert name == "lora"
    for path, value in flatten(params).items():  # the rest of the architecture is intact
        assert exported[path].shape == value.shape, path


# One model per method keeps the file fast (a top-k train step takes ~10 s to compile); the split and counts
# of every (method, model) pair are checked above without compiling.
@pytest.mark.parametrize(
    "model_name,name", [("bert", "magnitude"), ("gpt2", "movement"), ("bert", "soft_movement"), ("gpt2", "lora")]
)
def test_trains_a_few_steps_and_exports(request, model_name, name, steps=4):
    model = request.getfixturevalue(model_name)
    rules, hand = MODELS[model_name]
    loss_fn, batch = setup_task(model_name, model)
    plan = make_plan(model.params, rules)
    method = make_method(name, plan)
    tx = make_optimizer(method, 1e-2, steps)
    mesh = make_mesh(jax.devices()[:1])
    state, frozen = init_train_state(KEY, model.params, method, tx, mesh=mesh)
    frozen_before = {p: np.array(v) for p, v in frozen.items()}
    group = "lora" if name == "lora" else "weights"
    group_before = jax.tree.map(np.array, state.trainable[group])
    step = jit_train_step(make_train_step(loss_fn, method, tx), mesh)
    batch = shard_batch(batch, mesh)
    losses = []
    for _ in range(steps):  # one fixed batch at a fixed sparsity: the task loss must go down
        state, metrics = step(state, frozen, batch, SPARSITY)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    trainable = jax.device_get(state.trainable)
    for path, value in frozen.items():
        np.testing.assert_array_equal(np.asarray(value), frozen_before[path], err_msg=path)
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), trainable[group], group_before)
    assert any(jax.tree.leaves(moved))
    check_split_and_count(name, model, plan, trainable, frozen, hand(model.config, RANK))
    check_export(name, method, plan, trainable, frozen, model.params)


def test_counts_of_every_method(bert, gpt2):
    for model, rules, hand in ((bert, BERT_RULES, bert_counts), (gpt2, GPT2_RULES, gpt2_counts)):
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), model.params)
        plan = make_plan(shapes, rules)
        counts = hand(model.config, RANK)
        n_model = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
        ranks = PSTConfig().weight_rank + PSTConfig().mask_rank
        pst_hand = sum(ranks * (m.d_in + m.d_out) + m.d_in + m.d_out for m in plan.matrices) + counts["head"]
        expected = {
            "dense": n_model,
            "magnitude": n_model,
            "movement": n_model + counts["planned"],
            "soft_movement": n_model + counts["planned"],
            "lora": counts["lora"] + counts["head"],
            "pst": pst_hand,
        }
        got = {name: trainable_parameters(name, shapes, plan, rank=RANK) for name in baselines.METHOD_NAMES}
        assert got == expected
        assert got["pst"] == count_parameters(shapes, plan).trainable
        assert trainable_parameters("lora", shapes, plan, rank=RANK, train_head=False) == counts["lora"]
    with pytest.raises(ValueError, match="unknown method"):
        trainable_parameters("l0", shapes, plan)


def test_reference_frozen_embeddings(bert):
    plan = make_plan(bert.params, BERT_RULES)
    method = baselines.movement(plan, freeze=baselines.REFERENCE_FROZEN)
    trainable, frozen = jax.eval_shape(method.init, KEY, bert.params)
    embeddings = {p for p in flatten(bert.params) if "/embeddings/" in p}
    assert embeddings and set(frozen) == embeddings and not embeddings & set(trainable["weights"])
    n_frozen = sum(math.prod(x.shape) for x in frozen.values())
    count = trainable_parameters("movement", bert.params, plan, freeze=baselines.REFERENCE_FROZEN)
    assert count == sum(math.prod(x.shape) for x in jax.tree.leaves(trainable))
    assert count == trainable_parameters("movement", bert.params, plan) - n_frozen


# --- gradients, checked by hand on a linear functional L = sum(C * params): dL/d(effective param) = C ----------------


def layer0_plan(model):
    """GPT-2's first block only (fused c_attn and both MLP kernels): the layouts, at a third of the compile time."""
    plan = make_plan(model.params, GPT2_RULES)
    return plan._replace(matrices=tuple(m for m in plan.matrices if "/h/0/" in f"/{m.path}"))


def linear_loss(method, frozen, coefficients, sparsity):
    def loss(trainable):
        effective = flatten(method.effective_params(trainable, frozen, sparsity))
        return sum(jnp.sum(coefficients[p] * v) for p, v in effective.items())

    return jax.jit(jax.grad(loss))


def random_like(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), tree)


def test_magnitude_gradient_is_g_times_mask(gpt2):
    plan = layer0_plan(gpt2)
    method = baselines.magnitude(plan)
    trainable, frozen = method.init(KEY, gpt2.params)
    coefficients = random_like(trainable["weights"], 1)
    grads = linear_loss(method, frozen, coefficients, SPARSITY)(trainable)["weights"]
    planned = set(plan.by_kernel())
    for m in plan.matrices:  # GPT-2: (d_out, d_in) kernels, c_attn fused: each part its own mask
        keep = hand_keep(np.abs(read_matrix(np.asarray(trainable["weights"][m.path]), m)), SPARSITY)
        expected = read_matrix(np.asarray(coefficients[m.path]), m) * keep  # no term from |W| in the mask
        np.testing.assert_array_equal(read_matrix(np.asarray(grads[m.path]), m), expected, err_msg=m.name)
    for path in set(grads) - planned:
        np.testing.assert_array_equal(grads[path], coefficients[path], err_msg=path)


@pytest.mark.parametrize("name", ["movement", "soft_movement"])
def test_score_gradient_is_g_times_w(gpt2, name):
    plan = layer0_plan(gpt2)
    method = make_method(name, plan)
    trainable, frozen = method.init(KEY, gpt2.params)
    trainable["scores"] = random_like(trainable["scores"], 2)
    coefficients = random_like(trainable["weights"], 1)
    grads = linear_loss(method, frozen, coefficients, SPARSITY)(trainable)  # task loss only (no regularizer)
    for m in plan.matrices:
        w = read_matrix(np.asarray(trainable["weights"][m.path]), m)
        g = read_matrix(np.asarray(coefficients[m.path]), m)
        scores = np.asarray(trainable["scores"][m.name])
        np.testing.assert_allclose(grads["scores"][m.name], g * w, rtol=1e-6, err_msg=m.name)  # straight-through
        keep = hand_keep(scores, SPARSITY) if name == "movement" else sigmoid(scores) > FINAL_THRESHOLD
        np.testing.assert_array_equal(read_matrix(np.asarray(grads["weights"][m.path]), m), g * keep, err_msg=m.name)


# --- soft movement: threshold, floor, regularizer ------------------------------------------------------------------


def test_soft_threshold_and_lambda_follow_the_reference_schedule():
    # The reference: tau goes initial -> final along the cubic schedule, lambda = final_lambda * tau / final_tau.
    for s in (0.0, 0.2, 0.45, 0.9):
        progress = s / 0.9  # how far the cubic schedule is, from our sparsity (schedule 0 -> 0.9)
        np.testing.assert_allclose(float(baselines.soft_threshold(s, 0.9, 0.1)), 0.1 * progress, rtol=1e-6)
        np.testing.assert_allclose(
            float(baselines.soft_threshold(s, 0.9, 0.1, initial_threshold=0.3)), 0.3 + (0.1 - 0.3) * progress, rtol=1e-6
        )
    plan = Plan("toy", {"a/kernel": "sparse", "b/kernel": "sparse"}, (toy_matrix("a", 4, 6), toy_matrix("b", 8, 2)))
    method = baselines.soft_movement(plan, final_sparsity=0.9, final_threshold=0.1, final_lambda=400.0)
    scores = random_like({"a/kernel": jnp.zeros((4, 6)), "b/kernel": jnp.zeros((8, 2))}, 5)
    hand = 400.0 * (0.1 * 0.45 / 0.9) / 0.1 * np.mean([sigmoid(s).mean() for s in scores.values()])
    np.testing.assert_allclose(float(method.regularizer({"scores": scores}, jnp.float32(0.45))), hand, rtol=1e-5)
    assert float(method.regularizer({"scores": scores}, jnp.float32(0.0))) == 0.0
    with pytest.raises(ValueError, match="final_sparsity"):
        baselines.soft_movement(plan, final_sparsity=0.0)


def toy_matrix(name, d_in, d_out):
    return Matrix(f"{name}/kernel", f"{name}/kernel", "in_out", 0, 1, d_in, d_out)


def test_threshold_mask_floor_and_straight_through():
    scores = jnp.asarray(np.random.default_rng(0).normal(size=(40, 30)), jnp.float32)
    tau = jnp.float32(0.4)
    np.testing.assert_array_equal(baselines.threshold_mask(scores, tau), sigmoid(scores) > 0.4)
    # Almost everything below tau: the reference keeps the int(0.005 * n) + 1 highest scores instead.
    mask = np.asarray(baselines.threshold_mask(scores, jnp.float32(0.999)))
    n_min = int(0.005 * scores.size) + 1
    assert mask.sum() == n_min
    np.testing.assert_array_equal(mask, np.asarray(scores) >= np.sort(np.asarray(scores).ravel())[-n_min])
    assert np.asarray(baselines.threshold_mask(scores, jnp.float32(0.999), None)).sum() == 0
    c = jnp.asarray(np.random.default_rng(1).normal(size=scores.shape), jnp.float32)
    grad = jax.grad(lambda s: jnp.sum(baselines.threshold_mask(s, tau) * c))(scores)
    np.testing.assert_array_equal(grad, c)


# --- LoRA: the unmerged, intercepted forward equals the merged one -------------------------------------------------


def dot_shapes(jaxpr):
    """Output shapes of every dot_general in a jaxpr, sub-jaxprs included."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield tuple(eqn.outvars[0].aval.shape)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from dot_shapes(inner)


@pytest.mark.parametrize("name,rules", [("bert", BERT_RULES), ("gpt2", GPT2_RULES)])
def test_lora_unmerged_forward_and_gradients_match_merged(request, name, rules):
    model = request.getfixturevalue(name)
    plan = make_plan(model.params, rules)
    method = baselines.lora(plan, rank=RANK, alpha=ALPHA)
    trainable, frozen = jax.jit(method.init)(KEY, model.params)
    # B starts at zero (the update would vanish): give it values.
    b = random_like({n: f["B"] for n, f in trainable["lora"].items()}, 4)
    trainable["lora"] = {n: {"A": f["A"], "B": b[n]} for n, f in trainable["lora"].items()}
    ids = np.random.default_rng(0).integers(7, tiny.VOCAB, (4, 8)).astype(np.int32)
    batch, dropout_rng = {"input_ids": ids}, jax.random.key(1)  # train mode: same dropout in both forms

    def logits_loss(params, batch, rng):
        logits = model(batch["input_ids"], params=params, dropout_rng=rng, train=rng is not None).logits
        return jnp.mean(jnp.sin(logits)), logits

    apply_loss = baselines.lora_apply_loss(plan, baselines.lora_scale(RANK, ALPHA))

    def merged(tr):
        return logits_loss(method.effective_params(tr, frozen, 0.0), batch, dropout_rng)

    def unmerged(tr):
        return apply_loss(logits_loss, tr, frozen, 0.0, batch, dropout_rng)

    traced_m = jax.jit(jax.value_and_grad(merged, has_aux=True)).trace(trainable)
    traced_u = jax.jit(jax.value_and_grad(unmerged, has_aux=True)).trace(trainable)
    (loss_m, logits_m), grads_m = traced_m.lower().compile()(trainable)
    (loss_u, logits_u), grads_u = traced_u.lower().compile()(trainable)
    np.testing.assert_allclose(logits_u, logits_m, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss_u, loss_m, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(grads_u, grads_m, rtol=1e-4, atol=1e-6)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads_u["lora"]))
    # No (d_in, d_out) weight (or weight gradient) is ever formed by the unmerged form; the merged one does.
    kernel_shapes = {(m.d_in, m.d_out) for m in plan.matrices} | {(m.d_out, m.d_in) for m in plan.matrices}
    assert set(dot_shapes(traced_m.jaxpr.jaxpr)) & kernel_shapes
    assert not set(dot_shapes(traced_u.jaxpr.jaxpr)) & kernel_shapes


def test_lora_refuses_a_layer_it_cannot_intercept(bert):
    plan = make_plan(bert.params, BERT_RULES)
    ghost = toy_matrix("bert/ghost", 32, 32)
    plan = Plan(plan.rule_set, {**plan.roles, ghost.path: "sparse"}, (*plan.matrices, ghost))
    method = baselines.lora(plan, rank=RANK)
    trainable, frozen = method.init(KEY, bert.params)
    apply_loss = baselines.lora_apply_loss(plan, 1.0)
    batch = tiny.classification_batch(np.random.default_rng(0), batch=2)
    with pytest.raises(ValueError, match="bert/ghost"):
        jax.eval_shape(lambda t: apply_loss(classification_loss(bert), t, frozen, 0.0, batch, None), trainable)


# --- optimizer groups of the baselines -----------------------------------------------------------------------------


def test_scores_and_lora_groups():
    tree = {"weights": {"w": jnp.ones(2)}, "scores": {"m": jnp.ones((2, 2))}, "lora": {"m": {"A": jnp.ones((2, 1))}}}
    groups = ("weights", "scores", "lora")
    labels = {"weights": {"w": "weights"}, "scores": {"m": "scores"}, "lora": {"m": {"A": "lora"}}}
    assert param_labels(tree, groups) == labels
    tx = make_optimizer(groups, 0.1, total_steps=10, weight_decay=0.5, scores_learning_rate=0.01)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, tree), tx.init(tree), tree)
    # Adam's first step is -lr * (1 + weight_decay * param); the scores get their own lr and no weight decay.
    np.testing.assert_allclose(updates["weights"]["w"], -0.1 * 1.5, rtol=1e-5)
    np.testing.assert_allclose(updates["lora"]["m"]["A"], -0.1 * 1.5, rtol=1e-5)
    np.testing.assert_allclose(updates["scores"]["m"], -0.01, rtol=1e-5)
    default = make_optimizer(groups, 0.1, total_steps=10)
    updates, _ = default.update(jax.tree.map(jnp.ones_like, tree), default.init(tree), tree)
    np.testing.assert_allclose(updates["scores"]["m"], -0.1, rtol=1e-5)  # defaults to the main learning rate
