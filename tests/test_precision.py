"""bfloat16: frozen weights stored in it (``--frozen_dtype``), the model computing in it (``--dtype``).

The invariants: factors, scores, heads and optimizer state stay float32; ``W~ = W0 + beta * U @ V`` (and LoRA's and
the pruning baselines' kernels) are formed in float32 from a bfloat16 ``W0``; the exported model is float32.
Expectations are computed in float64 NumPy, not by the functions under test.
"""

import copy
import dataclasses
import json
import math
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from transformers import FlaxBertForSequenceClassification

from experiments import glue as glue_launcher
from experiments import nlg as nlg_launcher
from pst_jax import BERT_RULES, classification_loss, make_mesh, make_method, make_plan, methods, shard_batch
from pst_jax.core.model import masked_matrices
from pst_jax.core.pst import adapted_kernel
from pst_jax.core.rules import flatten, read_matrix, rules_for, unflatten
from pst_jax.core.topk import keep_mask
from pst_jax.glue import run as glue_run
from pst_jax.glue.check import check_export
from pst_jax.glue.run import run
from pst_jax.methods.base import cast_frozen, with_frozen_dtype
from pst_jax.nlg import run as nlg_run
from pst_jax.nlg.config import NLGConfig
from pst_jax.training.method_config import DTYPE_NAMES, MethodConfig
from pst_jax.training.run import setup_run
from pst_jax.training.step import init_train_state, jit_train_step, make_train_step
from tests import tiny
from tests.test_glue import NEVER, smoke_config

FIXTURES = Path(__file__).parent / "fixtures"
BF16 = jnp.bfloat16


def test_a_small_update_of_a_bfloat16_kernel_is_kept():
    """An update 1e-4 the size of W0: bfloat16's spacing (2**-8 relative) would round almost all of it away."""
    rng = np.random.default_rng(0)
    w0_16 = jnp.asarray(rng.standard_normal((64, 48)), BF16)  # a bfloat16-stored W0
    w0 = np.asarray(w0_16, np.float64)
    u = 1e-4 / math.sqrt(8) * rng.standard_normal((64, 8)).astype(np.float32)
    v = rng.standard_normal((8, 48)).astype(np.float32)
    update = u.astype(np.float64) @ v.astype(np.float64)  # std 1e-4, W0's std 1

    adapted = np.asarray(adapted_kernel(w0_16, {"U": jnp.asarray(u), "V": jnp.asarray(v)}))
    assert adapted.dtype == np.float32
    # Only float32's rounding of W0 + update: half a float32 spacing of |W~| < 8, 2**-22, i.e. < 1% of the update.
    np.testing.assert_allclose(adapted - w0, update, rtol=0, atol=2**-22)
    assert np.max(np.abs(adapted - w0 - update)) < 0.01 * np.max(np.abs(update))

    bf16_sum = np.asarray(w0_16 + jnp.asarray(update, BF16), np.float64)  # what a bfloat16 sum would keep
    kept = np.sum((bf16_sum - w0) * update) / np.sum(update * update)  # fraction of the update along itself
    assert np.mean(bf16_sum == w0) > 0.95 and abs(kept) < 0.1, (np.mean(bf16_sum == w0), kept)


def test_lora_and_the_pruning_baselines_form_their_kernels_in_float32(bert):
    plan = make_plan(bert.params, BERT_RULES)
    flat16 = cast_frozen(flatten(bert.params), BF16)
    m = plan.matrices[0]
    w0 = np.asarray(read_matrix(flat16[m.path], m), np.float64)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m.d_in, 8)).astype(np.float32)
    b = (1e-4 / math.sqrt(8) * rng.standard_normal((8, m.d_out))).astype(np.float32)
    factors = {x.name: {"A": jnp.zeros((x.d_in, 8)), "B": jnp.zeros((8, x.d_out))} for x in plan.matrices}
    factors[m.name] = {"A": jnp.asarray(a), "B": jnp.asarray(b)}
    merged = flatten(make_method("lora", plan).effective_params({"lora": factors, "head": {}}, flat16, 0.0))
    kernel = np.asarray(read_matrix(merged[m.path], m))
    assert kernel.dtype == np.float32  # float32's rounding of W0 + A @ B only: half a spacing, <= 2**-24 |W~|
    np.testing.assert_allclose(kernel - w0, a.astype(np.float64) @ b, rtol=0, atol=2**-23 * np.abs(w0).max())

    # Magnitude pruning of a bfloat16 matrix: M * W upcast, exactly floor(s * numel) zeros.
    out = masked_matrices({"w": jnp.asarray(w0, BF16)}, {"w": jnp.abs(jnp.asarray(w0, BF16))}, 0.5)
    assert out.weights["w"].dtype == jnp.float32 and out.masks["w"].dtype == jnp.float32
    assert int(np.sum(np.asarray(out.masks["w"]) == 0)) == math.floor(0.5 * w0.size)


def test_topk_of_bfloat16_scores_is_exact():
    """bfloat16 scores tie often (8 bits of mantissa): the count stays exact, ties pruned lowest index first."""
    scores = np.random.default_rng(2).standard_normal((96, 64)).astype(np.float32)
    scores16 = np.asarray(jnp.asarray(scores, BF16)).astype(np.float64)
    assert len(np.unique(scores16)) < scores16.size // 2  # many ties
    for sparsity in (0.1, 0.5, 0.9):
        k = math.floor(sparsity * scores.size)
        expected = np.ones(scores.size, bool)
        expected[np.argsort(scores16.ravel(), kind="stable")[:k]] = False
        got = np.asarray(keep_mask(jnp.asarray(scores, BF16), sparsity))
        np.testing.assert_array_equal(got.ravel(), expected)


@pytest.fixture(scope="module")
def one_layer(bert):
    """The tiny BERT's params cut to its first layer (half the compile time), and that model computing in float32
    and in bfloat16 (``_do_init=False``: the params are given, never initialised)."""
    config = copy.deepcopy(bert.config)
    config.num_hidden_layers = 1
    params = unflatten({p: x for p, x in flatten(bert.params).items() if "/layer/1/" not in p})
    models = {d: FlaxBertForSequenceClassification(config, dtype=jnp.dtype(d), _do_init=False) for d in DTYPE_NAMES}
    return params, models


def sgd_pst(model, params, frozen_dtype, lr=1e-2):
    """``(init(params) -> (state, frozen), jitted step)`` of PST with plain SGD: its update is ``-lr * grad``."""
    method = with_frozen_dtype(methods.pst(make_plan(params, BERT_RULES)), frozen_dtype)
    tx = optax.sgd(lr)
    step = jit_train_step(make_train_step(classification_loss(model), method, tx))
    return (lambda params: init_train_state(jax.random.key(0), params, method, tx)), step


def train(init_and_step, params, sparsities):
    init, step = init_and_step
    state, frozen = init(params)
    rng = np.random.default_rng(3)
    trajectory = [jax.device_get(state.trainable)]
    for s in sparsities:
        state, _ = step(state, frozen, tiny.classification_batch(rng), s)
        trajectory.append(jax.device_get(state.trainable))
    return frozen, trajectory


def test_pst_steps_on_bfloat16_frozen_weights_update_the_factors_as_on_float32(one_layer):
    params, models = one_layer
    fp32, bf16 = sgd_pst(models["float32"], params, jnp.float32), sgd_pst(models["float32"], params, BF16)
    # The frozen matrices rounded to bfloat16 values: then storage is the only difference, and it must make none, step
    # after step (with W~ summed in bfloat16, the factors' small updates of steps 1 and 2 would be rounded away).
    head = set(make_plan(params, BERT_RULES).paths("head"))
    flat = flatten(params)
    rounded = unflatten(
        {p: x.astype(BF16).astype(x.dtype) if x.ndim >= 2 and p not in head else x for p, x in flat.items()}
    )
    sparsities = (0.0, 0.5, 0.5)
    frozen32, path32 = train(fp32, rounded, sparsities)
    frozen16, path16 = train(bf16, params, sparsities)  # the same frozen values as `rounded`, stored in bfloat16
    assert float_dtypes(frozen32) == {"float32"} and float_dtypes(frozen16) == {"float32", "bfloat16"}
    for t, (a, b) in enumerate(zip(path32, path16, strict=True)):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            assert y.dtype == np.float32
            np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-9, err_msg=f"after step {t}")

    # Raw float32 W0 against its bfloat16 rounding (2**-9 relative, at most), one step at sparsity 0 (no mask to
    # flip at a rounded threshold): the gradient is smooth in W0, so each factor's update moves by O(2**-9) of
    # its size; 1e-2 leaves a margin of 5.
    _, (init, after32) = train(fp32, params, (0.0,))
    leaves = (jax.tree_util.tree_flatten_with_path(t)[0] for t in (init, after32, path16[1]))
    for (path, x0), (_, x32), (_, x16) in zip(*leaves, strict=True):
        d32, d16 = x32 - x0, x16 - x0
        assert np.max(np.abs(d16 - d32)) <= 1e-2 * np.max(np.abs(d32)), jax.tree_util.keystr(path)


@dataclasses.dataclass
class Settings(MethodConfig):
    seed: int = 0


def float_dtypes(tree) -> set[str]:
    return {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def test_a_bfloat16_run_learns_and_keeps_its_state_in_float32(one_layer):
    cfg = Settings(sparsity=0.5, dtype="bfloat16", frozen_dtype="bfloat16")
    params, models = one_layer
    model, plan, steps, mesh = models[cfg.dtype], make_plan(params, BERT_RULES), 40, make_mesh(jax.devices()[:1])
    setup = setup_run(cfg, params, plan, classification_loss(model), mesh, steps, learning_rate=1e-2)
    frozen = setup.frozen  # the matrices (the sparsified kernels among them) in bfloat16, the vectors float32
    assert {p for p, x in frozen.items() if x.dtype == BF16} == {p for p, x in frozen.items() if x.ndim >= 2}
    assert float_dtypes(frozen) == {"float32", "bfloat16"}
    state, rng, losses = setup.state, np.random.default_rng(0), []
    for t in range(steps):  # every batch is new: its loss before the step is a held-out loss
        state, metrics = setup.train_step(
            state, frozen, shard_batch(tiny.classification_batch(rng), mesh), setup.schedule(t)
        )
        losses.append(float(metrics["loss"]))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    assert float_dtypes(state.trainable) == float_dtypes(state.opt_state) == {"float32"}
    # The loss and the logits it returns are float32, upcast from the bfloat16 model's (traced, not compiled).
    batch = tiny.classification_batch(rng)
    logits = jax.eval_shape(model, batch["input_ids"], params=params).logits
    loss, aux = jax.eval_shape(classification_loss(model), params, batch, None)
    assert logits.dtype == BF16 and loss.dtype == aux["logits"].dtype == jnp.float32


@pytest.mark.parametrize(
    "launcher,flag,value",
    [(glue_launcher, "--dtype", "float16"), (nlg_launcher, "--frozen_dtype", "bf16"), (nlg_launcher, "--dtype", "")],
)
def test_an_unknown_dtype_is_a_one_line_error(launcher, flag, value, tiny_model, gpt2_folder, tmp_path, capsys):
    if launcher is glue_launcher:
        argv = ["--model", tiny_model, "--data_dir", str(FIXTURES / "glue")]
    else:
        argv = ["--model", gpt2_folder, "--data_dir", str(FIXTURES / "nlg" / "e2e")]
    assert launcher.main([*argv, "--output_dir", str(tmp_path / "run"), flag, value]) == 2
    err = capsys.readouterr().err
    assert err == f"error: unknown {flag} {value!r}; choose from float32, bfloat16\n", err
    assert not (tmp_path / "run").exists()


def test_the_nlg_model_loads_computing_in_dtype_with_float32_params(gpt2_folder):
    model, _ = nlg_run._load_model(NLGConfig(model=gpt2_folder, dtype="bfloat16"))
    assert model.dtype == BF16 and float_dtypes(model.params) == {"float32"}


def test_a_bfloat16_glue_run_reports_its_dtypes_and_exports_float32(tiny_model, tmp_path, monkeypatch):
    loaded, load = [], glue_run.load_model

    def load_model(*args):
        model, plan = load(*args)
        loaded.append(model)
        return model, plan

    monkeypatch.setattr(glue_run, "load_model", load_model)
    results = run(smoke_config("sst2", tiny_model, tmp_path, dtype="bfloat16", frozen_dtype="bfloat16"), hub_ok=NEVER)
    for name in ("results.json", "config.json"):
        written = json.loads((tmp_path / name).read_text())
        assert written["dtype"] == "bfloat16" and written["frozen_dtype"] == "bfloat16", name
    assert results["status"] == "finished"
    assert loaded[0].dtype == BF16 and float_dtypes(loaded[0].params) == {"float32"}  # computes in bf16, as loaded
    stored = flatten(
        flax.serialization.msgpack_restore((tmp_path / "sparse_model" / "flax_model.msgpack").read_bytes())
    )
    assert {str(x.dtype) for x in stored.values()} == {"float32"}
    plan = make_plan(stored, rules_for("bert"))
    for m in plan.matrices:
        assert np.sum(np.asarray(read_matrix(stored[m.path], m)) == 0) == math.floor(0.9 * m.numel), m.name
    report = check_export(tmp_path, hub_ok=NEVER)  # reloaded computing in bfloat16, as the run evaluated
    assert report["metrics"] == report["reported"]
