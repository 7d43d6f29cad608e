"""Parameter counts from shapes only, against hand computations."""

import jax
from transformers import BertConfig, FlaxBertForSequenceClassification, FlaxGPT2LMHeadModel, GPT2Config

from pst_jax import BERT_RULES, GPT2_RULES, PSTConfig, count_parameters, init_pst, make_plan, param_shapes
from pst_jax.core.rules import flatten


def per_matrix(d_in, d_out, rw=8, rm=8):
    return (rw + rm) * (d_in + d_out) + d_in + d_out


def test_bert_base_is_the_papers_figure_without_allocating():
    shapes = param_shapes(FlaxBertForSequenceClassification, BertConfig(num_labels=2))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(shapes))
    count = count_parameters(shapes, make_plan(shapes, BERT_RULES))
    assert count.pst == 2_820_096
    assert count.model == 109_482_240 + 768 * 2 + 2  # BERT-base + classifier
    assert count.head == 768 * 2 + 2 and count.trainable == 2_820_096 + 1538
    assert count.sparsified == 12 * (4 * 768 * 768 + 2 * 768 * 3072)
    assert abs(count.pst_vs_movement - 0.0145) < 5e-5  # the paper's "1.5%"


def test_gpt2_small_with_q_k_v_split():
    shapes = param_shapes(FlaxGPT2LMHeadModel, GPT2Config())
    count = count_parameters(shapes, make_plan(shapes, GPT2_RULES))
    d = 768
    block = 3 * per_matrix(d, d) + per_matrix(d, d) + per_matrix(d, 4 * d) + per_matrix(4 * d, d)
    assert count.pst == 12 * block
    assert count.model == 124_439_808  # GPT-2 small, LM head tied to the token embedding
    assert count.head == 0 and count.trainable == count.pst


def test_ranks_and_head_switch_on_a_real_tree(bert):
    config = PSTConfig(weight_rank=2, mask_rank=4)
    plan = make_plan(bert.params, BERT_RULES)
    count = count_parameters(bert.params, plan, config, train_head=False)
    factors = init_pst(jax.random.key(0), plan, config)
    assert count.pst == sum(x.size for x in jax.tree.leaves(factors))
    assert count.trainable == count.pst
    assert count.model == sum(x.size for x in flatten(bert.params).values())


def test_llama_2_7b_is_its_published_size_and_pst_counts_each_projection():
    from pst_jax.bench.models import abstract_params, model_config, unbuilt_model
    from pst_jax.core.rules import rules_for

    shapes = abstract_params(unbuilt_model(model_config("llama-2-7b")))
    plan = make_plan(shapes, rules_for("llama"))
    count = count_parameters(shapes, plan, train_head=False)
    d, f, vocab, layers = 4096, 11008, 32000, 32
    assert count.model == 6_738_415_616  # the "7B" of the model card
    assert count.model == layers * (4 * d * d + 3 * d * f + 2 * d) + 2 * vocab * d + d
    assert count.pst == layers * (4 * per_matrix(d, d) + 2 * per_matrix(d, f) + per_matrix(f, d))
    assert count.head == 0 and len(plan.matrices) == 7 * layers
