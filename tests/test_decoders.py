"""Llama, Mistral and Gemma against an independent float64 NumPy decoder; PST on them; rules; export round trip.

The reference below is written from the models' definitions (transformers' PyTorch modeling files and
``modeling_rope_utils.py``), not from :mod:`pst_jax.models`: RoPE rotates explicit ``(x_i, x_{i + d/2})``
pairs with frequencies computed one by one; attention loops over heads with an explicit key-value head index.
The same reference is applied to transformers' stock Flax classes: it must fail them where they are broken
(proof that the test can fail) and pass them where they are right.
"""

import copy
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import FlaxGemmaForCausalLM, FlaxLlamaForCausalLM, FlaxMistralForCausalLM

from pst_jax import (
    GEMMA_RULES,
    LLAMA_RULES,
    MISTRAL_RULES,
    causal_lm_loss,
    cubic_sparsity,
    export_model,
    init_train_state,
    jit_eval_step,
    jit_train_step,
    make_eval_step,
    make_mesh,
    make_method,
    make_optimizer,
    make_plan,
    make_train_step,
    methods,
    read_matrix,
    shard_batch,
)
from pst_jax.core.rules import flatten, rules_for
from pst_jax.models import check_config, decoder_from_config, load_decoder
from tests import tiny

TOLERANCE = 1e-4  # relative: max |logits - reference| / max |reference|
STOCK = {"llama": FlaxLlamaForCausalLM, "mistral": FlaxMistralForCausalLM, "gemma": FlaxGemmaForCausalLM}
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,  # head_dim 16, theta 5e5: wavelengths 6, 32, 166, ...: all 3 branches
}


# ----------------------------------------------------------------------------------------------------------------
# The reference, float64 NumPy
# ----------------------------------------------------------------------------------------------------------------


def ref_head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def ref_inverse_frequencies(config, seq_len: int) -> np.ndarray:
    """One frequency at a time, from transformers' ``_compute_*_parameters`` definitions."""
    d, theta = ref_head_dim(config), float(config.rope_theta)
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "dynamic":
        m, factor = config.max_position_embeddings, scaling["factor"]
        theta *= (factor * max(seq_len, m) / m - (factor - 1)) ** (d / (d - 2))
    out = []
    for i in range(d // 2):
        f = theta ** (-2.0 * i / d)
        if kind == "linear":
            f /= scaling["factor"]
        elif kind == "llama3":
            wavelength, old = 2 * math.pi / f, scaling["original_max_position_embeddings"]
            low, high, factor = scaling["low_freq_factor"], scaling["high_freq_factor"], scaling["factor"]
            if wavelength > old / low:
                f /= factor
            elif wavelength >= old / high:
                smooth = (old / wavelength - low) / (high - low)
                f = (1 - smooth) * f / factor + smooth * f
        else:
            assert kind in ("default", "dynamic"), kind
        out.append(f)
    return np.array(out)


def ref_rotate(x: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray) -> np.ndarray:
    """``x``: (seq, heads, d); pair ``(i, i + d/2)`` turns by ``position * inv_freq[i]``."""
    out, half = x.copy(), x.shape[-1] // 2
    for i in range(half):
        angle = positions[:, None] * inv_freq[i]
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * np.cos(angle) - b * np.sin(angle)
        out[..., i + half] = b * np.cos(angle) + a * np.sin(angle)
    return out


def ref_rms_norm(x: np.ndarray, weight: np.ndarray, eps: float, gemma: bool) -> np.ndarray:
    normed = x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps)
    return normed * (1.0 + weight if gemma else weight)


def ref_activation(config, x: np.ndarray) -> np.ndarray:
    if config.model_type == "gemma":
        assert config.hidden_activation == "gelu_pytorch_tanh"
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    assert config.hidden_act == "silu"
    return x / (1.0 + np.exp(-x))


def ref_attention(config, p, prefix, x, positions, keep, inv_freq) -> np.ndarray:
    """One sequence: ``x`` (seq, hidden), ``keep`` (seq,) the attention mask."""
    d, heads, kv_heads = ref_head_dim(config), config.num_attention_heads, config.num_key_value_heads
    window = config.sliding_window if config.model_type == "mistral" else None

    def project(name, n):
        y = x @ p[f"{prefix}/{name}/kernel"]
        return (y + p[f"{prefix}/{name}/bias"] if f"{prefix}/{name}/bias" in p else y).reshape(len(x), n, d)

    q = ref_rotate(project("q_proj", heads), positions, inv_freq)
    k = ref_rotate(project("k_proj", kv_heads), positions, inv_freq)
    v = project("v_proj", kv_heads)
    seq = len(x)
    allowed = np.array(
        [[j <= i and bool(keep[j]) and (window is None or i - j < window) for j in range(seq)] for i in range(seq)]
    )
    out = np.zeros((seq, heads, d))
    for h in range(heads):
        g = h // (heads // kv_heads)  # the key-value head this query head reads
        scores = np.where(allowed, q[:, h] @ k[:, g].T / math.sqrt(d), -np.inf)
        scores -= np.max(scores, axis=-1, keepdims=True, where=allowed, initial=-1e300)
        weights = np.where(allowed, np.exp(scores), 0.0)
        out[:, h] = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-300) @ v[:, g]
    y = out.reshape(seq, heads * d) @ p[f"{prefix}/o_proj/kernel"]
    return y + p[f"{prefix}/o_proj/bias"] if f"{prefix}/o_proj/bias" in p else y


def reference_logits(config, params, input_ids, attention_mask, position_ids) -> np.ndarray:
    p = {path: np.asarray(value, np.float64) for path, value in flatten(params).items()}
    gemma, eps = config.model_type == "gemma", config.rms_norm_eps
    inv_freq = ref_inverse_frequencies(config, int(np.max(position_ids)) + 1)
    embedding = p["model/embed_tokens/embedding"]
    logits = []
    for ids, keep, positions in zip(input_ids, attention_mask, position_ids, strict=True):
        h = embedding[ids] * (math.sqrt(config.hidden_size) if gemma else 1.0)
        for n in range(config.num_hidden_layers):
            layer = f"model/layers/{n}"
            x = ref_rms_norm(h, p[f"{layer}/input_layernorm/weight"], eps, gemma)
            h = h + ref_attention(config, p, f"{layer}/self_attn", x, positions, keep, inv_freq)
            x = ref_rms_norm(h, p[f"{layer}/post_attention_layernorm/weight"], eps, gemma)
            mlp = f"{layer}/mlp"
            gated = ref_activation(config, x @ p[f"{mlp}/gate_proj/kernel"]) * (x @ p[f"{mlp}/up_proj/kernel"])
            h = h + gated @ p[f"{mlp}/down_proj/kernel"]
        h = ref_rms_norm(h, p["model/norm/weight"], eps, gemma)
        logits.append(h @ (embedding.T if config.tie_word_embeddings else p["lm_head/kernel"]))
    return np.stack(logits)


# ----------------------------------------------------------------------------------------------------------------
# Cases: one per family and RoPE variant
# ----------------------------------------------------------------------------------------------------------------


class Case(NamedTuple):
    model_type: str
    overrides: dict
    padding: str | None  # "left", "right" or None
    stock_right: bool  # does transformers' stock Flax class compute this config correctly?
    length: int = 12


CASES = {
    "llama_theta_1e4": Case("llama", {}, "right", True),
    "llama3_theta_5e5": Case("llama", {"rope_theta": 5e5, "rope_scaling": LLAMA3}, "left", False),
    "llama_head_dim_32": Case("llama", {"head_dim": 32}, None, False),
    "llama_linear": Case("llama", {"rope_scaling": {"rope_type": "linear", "factor": 4.0}}, None, False),
    # 40 tokens > max_position_embeddings 32: the NTK base grows (the stock class needs >= 2 * head_dim positions)
    "llama_dynamic": Case(
        "llama",
        {"rope_scaling": {"rope_type": "dynamic", "factor": 4.0}, "max_position_embeddings": 32},
        None,
        False,
        40,
    ),
    "mistral_theta_1e6_no_window": Case("mistral", {"rope_theta": 1e6, "sliding_window": None}, "right", False),
    "mistral_window_4": Case("mistral", {"sliding_window": 4}, "left", False),
    "mistral_head_dim_32": Case("mistral", {"head_dim": 32, "sliding_window": None}, None, False),
    "gemma": Case("gemma", {}, "right", True),
    "gemma_theta_1e5_head_dim_32": Case("gemma", {"rope_theta": 1e5, "head_dim": 32}, None, False),
}


def inputs(padding: str | None, batch: int = 2, length: int = 12):
    """Random tokens; with padding, the second row's first (left) or last (right) 4 tokens are padding.

    Left padding comes with the position ids generation uses (``cumsum(mask) - 1``, clipped at 0).
    """
    ids = np.random.default_rng(0).integers(0, tiny.VOCAB, (batch, length)).astype(np.int32)
    mask = np.ones_like(ids)
    if padding == "right":
        mask[1, -4:] = 0
    elif padding == "left":
        mask[1, :4] = 0
    positions = (
        np.maximum(np.cumsum(mask, axis=1) - 1, 0) if padding == "left" else np.tile(np.arange(length), (batch, 1))
    )
    return ids, mask, positions.astype(np.int32)


def relative_error(logits, reference, mask) -> tuple[float, float]:
    """Max absolute error over the non-padding positions, and it divided by the reference's max magnitude."""
    keep = mask.astype(bool)
    error = float(np.max(np.abs(np.asarray(logits, np.float64)[keep] - reference[keep])))
    return error, error / float(np.max(np.abs(reference[keep])))


@functools.cache
def build(name: str):
    spec = CASES[name]
    config = tiny.decoder_config(spec.model_type, **spec.overrides)
    model = decoder_from_config(config, seed=1)
    ids, mask, positions = inputs(spec.padding, length=spec.length)
    reference = reference_logits(config, model.params, ids, mask, positions)
    return name, config, model, (ids, mask, positions), reference, spec.stock_right


@pytest.fixture(params=sorted(CASES))
def case(request):
    return build(request.param)


def test_logits_match_the_numpy_reference(case):
    name, config, model, (ids, mask, positions), reference, _ = case
    logits = jax.jit(lambda p: model(ids, attention_mask=mask, position_ids=positions, params=p).logits)(model.params)
    abs_error, rel_error = relative_error(logits, reference, mask)
    assert rel_error < TOLERANCE, (name, abs_error, rel_error)


def test_the_reference_fails_the_stock_class_where_it_is_broken(case):
    """The stock class, on the same weights: far from the reference where broken, within tolerance where right."""
    name, config, model, (ids, mask, positions), reference, stock_right = case
    stock = STOCK[config.model_type](config, seed=1)
    if jax.tree.map(jnp.shape, stock.params) != jax.tree.map(jnp.shape, model.params):
        assert not stock_right, name  # head_dim ignored: q, k, v, o have the wrong shapes
        return
    try:
        logits = stock(ids, attention_mask=mask, position_ids=positions, params=model.params).logits
    except ValueError as error:  # longer than max_position_embeddings: its mask constant is too short
        assert not stock_right and "broadcasting" in str(error), (name, error)
        return
    abs_error, rel_error = relative_error(logits, reference, mask)
    if stock_right:
        assert rel_error < TOLERANCE, (name, abs_error, rel_error)
    else:
        assert rel_error > 100 * TOLERANCE, (name, abs_error, rel_error)


@pytest.mark.parametrize("name", sorted(n for n, spec in CASES.items() if "rope_scaling" in spec.overrides))
def test_the_reference_sees_the_rope_scaling(name):
    """Without its ``rope_scaling`` the reference moves far beyond the tolerance: the scaling is really tested."""
    name, config, model, (ids, mask, positions), reference, _ = build(name)
    unscaled = copy.deepcopy(config)
    unscaled.rope_scaling = None
    _, rel_error = relative_error(reference_logits(unscaled, model.params, ids, mask, positions), reference, mask)
    assert rel_error > 100 * TOLERANCE, (name, rel_error)


@pytest.mark.parametrize("name", ["llama3_theta_5e5", "mistral_window_4", "gemma"])
def test_cached_decoding_matches_the_full_forward(name):
    """A 5-token prompt then one token at a time through the KV cache: the logits of the full forward."""
    spec = CASES[name]
    model = decoder_from_config(tiny.decoder_config(spec.model_type, **spec.overrides), seed=1)
    ids, mask, positions = inputs(None)
    full = model(ids, attention_mask=mask, params=model.params).logits

    @jax.jit
    def step(ids, positions, cache):
        out = model(ids, attention_mask=mask, position_ids=positions, past_key_values=cache)
        return out.logits, out.past_key_values

    prompt_logits, cache = step(ids[:, :5], positions[:, :5], model.init_cache(ids.shape[0], ids.shape[1]))
    logits = [prompt_logits]
    for t in range(5, ids.shape[1]):
        step_logits, cache = step(ids[:, t : t + 1], positions[:, t : t + 1], cache)
        logits.append(step_logits)
    np.testing.assert_allclose(np.concatenate(logits, axis=1), full, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(full))))


def test_no_max_positions_squared_mask():
    """A 1M-position config runs a 12-token call with no array larger than the call needs (the stock classes
    build a ``max_position_embeddings ** 2`` mask: 4096 positions already give a 16M-entry array)."""

    def largest_array(model):
        ids = jnp.zeros((1, 12), jnp.int32)
        jaxpr = jax.make_jaxpr(lambda p: model(ids, params=p).logits)(model.params)
        sizes = [math.prod(v.aval.shape) for eqn in jaxpr.eqns for v in eqn.outvars]
        sizes += [math.prod(np.shape(c)) for c in jaxpr.consts]
        return max(sizes)

    ours = decoder_from_config(tiny.decoder_config("llama", max_position_embeddings=2**20, num_hidden_layers=1))
    assert largest_array(ours) < 2**14  # the biggest: (1, 12, 96) activations, (1, 12, 64) logits, ...
    stock = FlaxLlamaForCausalLM(tiny.decoder_config("llama", max_position_embeddings=4096, num_hidden_layers=1))
    assert largest_array(stock) >= 4096**2


def test_a_stock_checkpoint_loads_with_the_fixed_class(tmp_path):
    config = tiny.decoder_config("mistral", num_hidden_layers=1, sliding_window=None)
    stock = FlaxMistralForCausalLM(config, seed=3)
    stock.save_pretrained(tmp_path)
    model = load_decoder(str(tmp_path))
    assert type(model).__module__ == "pst_jax.models.decoders" and model.config.sliding_window is None
    loaded = flatten(model.params)
    for path, value in flatten(stock.params).items():
        np.testing.assert_array_equal(np.asarray(loaded[path]), np.asarray(value), err_msg=path)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("rope_scaling", {"rope_type": "yarn", "factor": 4.0}, "rope_scaling type 'yarn'"),
        ("rope_scaling", {"rope_type": "llama3", "factor": 8.0}, "lacks 'low_freq_factor'"),
        ("partial_rotary_factor", 0.5, "partial_rotary_factor=0.5"),
        ("num_key_value_heads", 3, "num_key_value_heads=3"),
    ],
)
def test_configs_it_cannot_compute_are_refused(field, value, message):
    config = tiny.decoder_config("llama")
    setattr(config, field, value)  # after construction: the config class validates some of these itself
    with pytest.raises(ValueError, match=message):
        check_config(config)
    with pytest.raises(ValueError, match=message):
        decoder_from_config(config)


# ----------------------------------------------------------------------------------------------------------------
# Rules, PST training, export
# ----------------------------------------------------------------------------------------------------------------

SPARSE = ("self_attn/q_proj", "self_attn/k_proj", "self_attn/v_proj", "self_attn/o_proj")
SPARSE += ("mlp/gate_proj", "mlp/up_proj", "mlp/down_proj")


@pytest.mark.parametrize(
    "model_type,rules", [("llama", LLAMA_RULES), ("mistral", MISTRAL_RULES), ("gemma", GEMMA_RULES)]
)
def test_rules_select_seven_kernels_per_layer_and_freeze_the_rest(model_type, rules):
    model = tiny.decoder(model_type, num_hidden_layers=1, attention_bias=model_type != "mistral")
    assert rules_for(model.config.model_type) is rules
    plan = make_plan(model.params, rules)
    assert {m.name for m in plan.matrices} == {f"model/layers/0/{k}/kernel" for k in SPARSE}
    assert all(m.layout == "in_out" and m.parts == 1 for m in plan.matrices)
    by_name = {m.name.split("/")[-2]: m for m in plan.matrices}
    assert (by_name["q_proj"].d_in, by_name["q_proj"].d_out) == (64, 64)
    assert (by_name["k_proj"].d_in, by_name["k_proj"].d_out) == (64, 32)  # 2 key-value heads of 16
    assert (by_name["down_proj"].d_in, by_name["down_proj"].d_out) == (96, 64)
    assert plan.paths("head") == ()
    frozen = set(plan.paths("frozen"))
    assert "model/embed_tokens/embedding" in frozen and "model/norm/weight" in frozen
    assert ("lm_head/kernel" in frozen) == (model_type != "gemma")  # Gemma's head is the tied embedding
    if model_type != "mistral":
        assert "model/layers/0/self_attn/q_proj/bias" in frozen


def test_llama_mlp_bias_is_honoured_and_frozen():
    model = tiny.decoder("llama", num_hidden_layers=1, mlp_bias=True)
    params = flatten(model.params)
    assert params["model/layers/0/mlp/up_proj/bias"].shape == (96,)
    assert make_plan(model.params, LLAMA_RULES).roles["model/layers/0/mlp/up_proj/bias"] == "frozen"


def test_pst_trains_a_tiny_llama_and_exports_a_checkpoint_the_stock_class_loads(tmp_path):
    model = tiny.decoder("llama", hidden_size=32, intermediate_size=48, num_hidden_layers=1)
    plan = make_plan(model.params, LLAMA_RULES)
    method, steps, sparsity = methods.pst(plan), 30, 0.5
    tx, mesh, loss_fn = make_optimizer(method, 1e-2, steps), make_mesh(jax.devices()[:1]), causal_lm_loss(model)
    state, frozen = init_train_state(jax.random.key(0), model.params, method, tx, mesh=mesh)
    step = jit_train_step(make_train_step(loss_fn, method, tx), mesh)
    evaluate = jit_eval_step(make_eval_step(loss_fn, method))
    schedule = cubic_sparsity(steps, sparsity, initial_warmup=0.1, final_warmup=0.3)
    held_out, rng = shard_batch(tiny.lm_batch(np.random.default_rng(123)), mesh), np.random.default_rng(0)
    before = float(evaluate(state.trainable, frozen, held_out, 0.0)[0])
    for t in range(steps):
        state, _ = step(state, frozen, shard_batch(tiny.lm_batch(rng), mesh), schedule(t))
    after = float(evaluate(state.trainable, frozen, held_out, schedule(steps))[0])
    assert after < 0.5 * before, (before, after)

    exported = export_model(state.trainable, frozen, sparsity, method)
    flat = flatten(exported)
    for m in plan.matrices:
        assert int(np.sum(read_matrix(flat[m.path], m) == 0)) == math.floor(sparsity * m.numel), m.name
    sparse_paths = {m.path for m in plan.matrices}
    assert len(sparse_paths) == len(SPARSE)
    for path, value in flat.items():
        if path not in sparse_paths:
            assert np.count_nonzero(value == 0) == 0, path
            np.testing.assert_array_equal(value, flatten(model.params)[path], err_msg=path)

    model.save_pretrained(tmp_path, params=exported)
    reloaded = FlaxLlamaForCausalLM.from_pretrained(tmp_path)
    assert type(reloaded) is FlaxLlamaForCausalLM
    loaded = flatten(reloaded.params)
    assert set(loaded) == set(flat)
    for path, value in flat.items():
        np.testing.assert_array_equal(np.asarray(loaded[path]), value, err_msg=path)


@pytest.mark.slow  # PST on a tiny Llama runs in the fast suite
@pytest.mark.parametrize("model_type,name", [("mistral", "movement"), ("gemma", "lora")])
def test_baselines_train_the_other_families(model_type, name, steps=3):
    """A pruning baseline and LoRA through the same step on Mistral and Gemma (one family each keeps this fast)."""
    model = tiny.decoder(model_type, hidden_size=32, intermediate_size=48, num_hidden_layers=1)
    plan = make_plan(model.params, rules_for(model_type))
    method = make_method(name, plan)
    tx, mesh, loss_fn = make_optimizer(method, 1e-2, steps), make_mesh(jax.devices()[:1]), causal_lm_loss(model)
    state, frozen = init_train_state(jax.random.key(0), model.params, method, tx, mesh=mesh)
    step = jit_train_step(make_train_step(loss_fn, method, tx), mesh)
    batch, losses = shard_batch(tiny.lm_batch(np.random.default_rng(0)), mesh), []
    for _ in range(steps):
        state, metrics = step(state, frozen, batch, 0.5)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    exported = flatten(export_model(state.trainable, frozen, 0.5, method))
    for m in plan.matrices:
        zeros = int(np.sum(read_matrix(exported[m.path], m) == 0))
        assert zeros == (math.floor(0.5 * m.numel) if name == "movement" else 0), m.name


@pytest.mark.parametrize("name", ["llama3_theta_5e5", "mistral_window_4"])
def test_remat_computes_the_same_logits_gradients_and_cached_decoding(name, tmp_path):
    """``remat`` changes what the backward pass keeps, not what it computes: bitwise the same loss and gradients,
    and the same logits through the KV cache; the exported config does not carry it."""
    _, config, model, (ids, mask, positions), _, _ = build(name)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    rematted = load_decoder(str(folder), remat=True)
    assert rematted.module.remat and not load_decoder(str(folder)).module.remat

    def loss(m):
        return lambda p: jnp.mean(m(ids, attention_mask=mask, position_ids=positions, params=p).logits ** 2)

    # op by op: jitted, XLA fuses the two backward programs differently and the loss moves by an ulp
    (plain, plain_grads), (remat, remat_grads) = (jax.value_and_grad(loss(m))(model.params) for m in (model, rematted))
    assert float(plain) == float(remat)
    for a, b in zip(jax.tree.leaves(plain_grads), jax.tree.leaves(remat_grads), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    def cached(m):  # jitted, as decoding runs (op by op, the two 2-call decodes cost 8 s of compiling)
        @jax.jit
        def decode(params):
            prompt = m(ids[:, :5], attention_mask=mask, position_ids=positions[:, :5],
                       past_key_values=m.init_cache(ids.shape[0], ids.shape[1]), params=params)  # fmt: skip
            step = m(ids[:, 5:6], attention_mask=mask, position_ids=positions[:, 5:6],
                     past_key_values=prompt.past_key_values, params=params)  # fmt: skip
            return step.logits

        return np.asarray(decode(model.params))

    np.testing.assert_array_equal(cached(rematted), cached(model))
    rematted.save_pretrained(tmp_path / "export")
    assert "remat" not in (tmp_path / "export" / "config.json").read_text()
