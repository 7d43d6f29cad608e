"""Path rules: which kernels are sparsified, in which layout; errors for the wrong model."""

import logging

import jax
import numpy as np
import pytest

from pst_jax import BERT_RULES, GPT2_RULES, ROBERTA_RULES, Rule, RuleSet, init_pst, make_plan, masks, read_matrix
from pst_jax.core.rules import flatten, rules_for

BERT_LAYER_KERNELS = [
    "attention/self/query",
    "attention/self/key",
    "attention/self/value",
    "attention/output/dense",
    "intermediate/dense",
    "output/dense",
]


def test_bert_selects_six_kernels_per_layer(bert):
    plan = make_plan(bert.params, BERT_RULES)
    want = {f"bert/encoder/layer/{i}/{k}/kernel" for i in range(2) for k in BERT_LAYER_KERNELS}
    assert {m.name for m in plan.matrices} == want
    assert all(m.layout == "in_out" and m.parts == 1 for m in plan.matrices)
    assert set(plan.paths("head")) == {"classifier/kernel", "classifier/bias"}
    frozen = set(plan.paths("frozen"))
    assert "bert/pooler/dense/kernel" in frozen and "bert/embeddings/word_embeddings/embedding" in frozen
    inter = next(m for m in plan.matrices if "intermediate" in m.name)
    assert (inter.d_in, inter.d_out) == (32, 48)


def test_roberta_head_is_two_layers(roberta):
    plan = make_plan(roberta.params, ROBERTA_RULES)
    assert len(plan.matrices) == 12
    assert set(plan.paths("head")) == {
        "classifier/dense/kernel",
        "classifier/dense/bias",
        "classifier/out_proj/kernel",
        "classifier/out_proj/bias",
    }


def test_gpt2_splits_fused_qkv_and_knows_conv1d_layout(gpt2):
    plan = make_plan(gpt2.params, GPT2_RULES)
    flat = flatten(gpt2.params)
    by_name = {m.name: m for m in plan.matrices}
    assert len(plan.matrices) == 2 * 6  # q, k, v, c_proj, c_fc, mlp.c_proj per block
    fused = flat["transformer/h/0/attn/c_attn/kernel"]  # stored (3*d, d): q, k, v stacked on axis 0
    assert fused.shape == (96, 32)
    for i, part in enumerate("qkv"):
        m = by_name[f"transformer/h/0/attn/c_attn/kernel:{part}"]
        assert (m.d_in, m.d_out, m.layout) == (32, 32, "out_in")
        np.testing.assert_array_equal(read_matrix(fused, m), fused[32 * i : 32 * (i + 1)].T)
    fc = by_name["transformer/h/0/mlp/c_fc/kernel"]
    assert (fc.d_in, fc.d_out) == (32, 128)  # stored (128, 32)
    proj = by_name["transformer/h/0/mlp/c_proj/kernel"]
    assert (proj.d_in, proj.d_out) == (128, 32)
    assert plan.paths("head") == ()


def test_gpt2_q_k_v_get_separate_masks(gpt2):
    """Scale q's block up 100x: a joint mask over c_attn would keep all of q; separate masks prune each half."""
    plan = make_plan(gpt2.params, GPT2_RULES)
    params = flatten(gpt2.params)
    path = "transformer/h/0/attn/c_attn/kernel"
    params[path] = np.asarray(params[path]).copy()
    params[path][:32] *= 100.0
    factors = init_pst(jax.random.key(0), plan)
    m = jax.jit(lambda p, f: masks(p, f, 0.5, plan))(params, factors)
    for part in "qkv":
        assert int(np.sum(np.asarray(m[f"{path}:{part}"]) == 0)) == 32 * 32 // 2, part


def test_wrong_rule_set_is_a_clear_error(gpt2):
    with pytest.raises(ValueError, match=r"match no rule of rule set 'bert'.*transformer/"):
        make_plan(gpt2.params, BERT_RULES)


def test_rule_set_selecting_nothing_is_an_error(bert):
    with pytest.raises(ValueError, match="selects no kernel"):
        make_plan(bert.params, RuleSet("nothing", (Rule(".*", "frozen"),)))


def test_first_match_wins(bert):
    query = r"attention/self/query/kernel$"
    plan = make_plan(bert.params, RuleSet("q-frozen", (Rule(query, "frozen"),) + BERT_RULES.rules))
    assert not any("query" in m.name for m in plan.matrices)
    assert len(plan.matrices) == 10
    assert plan.roles["bert/encoder/layer/0/attention/self/query/kernel"] == "frozen"


def test_matched_rules_are_logged(bert, caplog):
    with caplog.at_level(logging.INFO, logger="pst_jax"):
        make_plan(bert.params, BERT_RULES)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(BERT_RULES.rules)
    assert any("sparse" in line and " 12 params" in line for line in lines)


def test_rules_for_model_types():
    assert rules_for("bert") is BERT_RULES and rules_for("gpt2") is GPT2_RULES
    with pytest.raises(ValueError, match="no PST rule set for model type 't5'"):
        rules_for("t5")
