"""experiments.nlg on Llama, Mistral and Gemma: beam search against uncached decoding, bos rows, one-line errors,
and PST smoke runs whose exported checkpoints transformers' stock Flax classes load."""

import dataclasses
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from transformers import AutoTokenizer, FlaxGemmaForCausalLM, FlaxLlamaForCausalLM, FlaxMistralForCausalLM

from experiments import tiny_decoder
from pst_jax.core.rules import flatten
from pst_jax.models import decoder_from_config
from pst_jax.models.small import save_random_decoder, small_config, special_token_ids
from pst_jax.nlg.beam_search import beam_search, make_generate
from pst_jax.nlg.data import NLGExample, load_nlg_dir
from pst_jax.nlg.rows import encode_for_lm, encode_prompts
from pst_jax.nlg.run import run
from tests import tiny
from tests.test_beam_search import EOS, PROMPTS, STEPS, Config, _eos_filled, _greedy, _left_padded, _lora_reference
from tests.test_nlg import NEVER, smoke_config

FIXTURES = Path(__file__).parent / "fixtures"
STOCK = {"llama": FlaxLlamaForCausalLM, "mistral": FlaxMistralForCausalLM, "gemma": FlaxGemmaForCausalLM}
SPARSE = ("self_attn/q_proj", "self_attn/k_proj", "self_attn/v_proj", "self_attn/o_proj")
SPARSE += ("mlp/gate_proj", "mlp/up_proj", "mlp/down_proj")
SEARCHES = [Config(1, 0, 0.8), Config(4, 2, 0.8)]  # greedy; beams with a 2-gram ban

# ----------------------------------------------------------------------------------------------------------------
# Beam search through the decoders' KV caches against full, uncached recomputation
# ----------------------------------------------------------------------------------------------------------------


def _tiny_lm_config(model_type: str, **overrides):
    """A 24-token decoder (EOS 0 among them), 2 layers, 32 wide: 4 query heads of 8 on 2 key-value heads."""
    return tiny.decoder_config(model_type, vocab_size=24, hidden_size=32, intermediate_size=48, **overrides)


def _uncached_last_logits(model, params):
    """``rows -> [len(rows), V]`` float64 logits after each row (rows of one length): the model without a cache,
    on right-padded rows (padding after a row cannot reach it through the causal mask), default positions."""
    forward = jax.jit(lambda p, ids: model(ids, params=p).logits)

    def last_logits(rows: list[list[int]]) -> np.ndarray:
        ids = np.zeros((4, 16), np.int32)
        ids[: len(rows), : len(rows[0])] = rows
        return np.asarray(forward(params, ids), np.float64)[: len(rows), len(rows[0]) - 1]

    return last_logits


def _search(model, config: Config) -> np.ndarray:
    generate = make_generate(
        model,
        num_beams=config.num_beams,
        max_new_tokens=STEPS,
        length_penalty=config.length_penalty,
        no_repeat_ngram_size=config.ngram,
        eos_token_id=EOS,
    )
    return np.asarray(generate(model.params, *_left_padded(PROMPTS)))  # prompts of 3, 5, 6 tokens: left padding


@pytest.mark.parametrize(
    ("model_type", "overrides"),
    [
        ("llama", {}),
        # Slow: the fast suite has llama here, and the cached forward of Mistral (window 4) and Gemma in
        # test_decoders.py::test_cached_decoding_matches_the_full_forward. A window of 4 is shorter than the
        # 6-token prompt + 10 new tokens: cached keys beyond it must be masked.
        pytest.param("mistral", {"sliding_window": 4}, marks=pytest.mark.slow),
        pytest.param("gemma", {}, marks=pytest.mark.slow),
    ],
)
def test_cached_beam_search_matches_uncached_decoding(model_type, overrides):
    """Greedy search is the argmax of full recomputation at every step, and 4 beams with a 2-gram ban are LoRA's
    loop on the same recomputed logits, token for token, for prompts left-padded in one batch."""
    model = decoder_from_config(_tiny_lm_config(model_type, **overrides), seed=0)
    last_logits = _uncached_last_logits(model, model.params)
    greedy, beams = (_search(model, config) for config in SEARCHES)
    np.testing.assert_array_equal(greedy, [_eos_filled(_greedy(last_logits, p)) for p in PROMPTS])
    np.testing.assert_array_equal(beams, [_eos_filled(_lora_reference(last_logits, p, SEARCHES[1])) for p in PROMPTS])
    assert len({len(p) for p in PROMPTS}) == len(PROMPTS) and (greedy != EOS).any()
    if "sliding_window" in overrides:  # the window changes what is generated: it is really tested
        config = _tiny_lm_config(model_type, **{**overrides, "sliding_window": None})
        unwindowed = decoder_from_config(config, _do_init=False)
        free = _uncached_last_logits(unwindowed, model.params)
        assert [_greedy(free, p) for p in PROMPTS] != [_greedy(last_logits, p) for p in PROMPTS]


def test_a_cache_without_the_batch_first_is_a_one_line_error():
    class Model:
        def init_cache(self, batch, length):
            return {"layer": {"cached_key": np.zeros((length, batch, 8)), "cache_index": np.int32(0)}}

    with pytest.raises(ValueError, match=r"batch first; \['layer'\]\['cached_key'\] has shape \(13, 2, 8\)"):
        beam_search(Model(), {}, np.ones((2, 3), np.int32), np.ones((2, 3), np.int32), num_beams=2, max_new_tokens=10)


# ----------------------------------------------------------------------------------------------------------------
# Rows with a bos-adding tokenizer (Llama's, Mistral's, Gemma's start every text with it; GPT-2's does not)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bos_tokenizer():
    """GPT-2's tokenizer told to start every text with its bos (``<|endoftext|>``, 50256), as Llama's does."""
    return AutoTokenizer.from_pretrained(FIXTURES / "gpt2_tokenizer", add_bos_token=True)


def test_rows_and_prompts_start_with_bos_where_the_tokenizer_adds_it(bos_tokenizer, gpt2_tokenizer):
    example = NLGExample("name : Aromi", ("Aromi is a pub .",))
    bos = bos_tokenizer.bos_token_id
    plain = encode_for_lm(gpt2_tokenizer, [example], 64)
    marked = encode_for_lm(bos_tokenizer, [example], 64)
    assert plain["input_ids"][0, 0] != bos  # GPT-2's rows: no bos, as LoRA's
    for name in ("input_ids", "attention_mask", "loss_mask"):
        prefix = {"input_ids": bos, "attention_mask": 1, "loss_mask": 0}[name]  # bos: attended, never a target
        assert marked[name][0].tolist() == [prefix, *plain[name][0].tolist()], name
    source = bos_tokenizer(example.source, add_special_tokens=False)["input_ids"]
    prompts = encode_prompts(bos_tokenizer, [example.source, "name"], 64)
    assert prompts["input_ids"][0].tolist() == [bos, *source, bos_tokenizer.eos_token_id]
    cut = encode_prompts(bos_tokenizer, [example.source], 4)  # too long: bos, then the last 3 tokens (eos last)
    assert cut["input_ids"][0].tolist() == [bos, *source[-2:], bos_tokenizer.eos_token_id]


# ----------------------------------------------------------------------------------------------------------------
# experiments.nlg on the decoders: smoke runs and one-line errors
# ----------------------------------------------------------------------------------------------------------------

#: name -> (model_type, sliding_window)
RUNS = {"llama": ("llama", None), "mistral_window_4": ("mistral", 4), "mistral_no_window": ("mistral", None)}
RUNS["gemma"] = ("gemma", None)
RUNS["llama_remat"] = ("llama", None)  # --remat: the same run, each layer recomputed in the backward pass


@pytest.fixture(scope="module")
def decoder_folder(tmp_path_factory, bos_tokenizer):
    """``(model_type, sliding_window) -> folder``: a random decoder, 2 layers, 32 wide (4 heads of 8 on 2 key-value
    heads), GPT-2's 50,257 tokens, saved with the bos-adding GPT-2 tokenizer; built once per module."""
    made = {}

    def make(model_type: str, sliding_window: int | None = None) -> str:
        if (model_type, sliding_window) not in made:
            config = small_config(
                model_type,
                len(bos_tokenizer),
                hidden_size=32,
                max_position_embeddings=256,
                sliding_window=sliding_window,
                special_tokens=special_token_ids(bos_tokenizer),
            )
            folder = tmp_path_factory.mktemp(f"tiny_{model_type}")
            made[model_type, sliding_window] = str(save_random_decoder(config, bos_tokenizer, folder, seed=0))
        return made[model_type, sliding_window]

    return make


def _decoder_smoke_config(folder: str, out: Path):
    return smoke_config(
        "e2e",
        folder,
        out,
        max_length=64,
        max_new_tokens=8,
        num_beams=3,
        generate_batch_size=4,
        max_generate_samples=3,
        max_eval_samples=1,
        metrics=("BLEU", "TER"),
    )


def _layer_kernels(params: dict, layers: int) -> dict[str, np.ndarray]:
    """The 7 sparsified kernels of every layer, read by name from a checkpoint's params (not from a plan)."""
    flat = {path: np.asarray(value) for path, value in flatten(params).items()}
    return {f"model/layers/{n}/{k}/kernel": flat[f"model/layers/{n}/{k}/kernel"] for n in range(layers) for k in SPARSE}


@pytest.mark.parametrize(
    "name",
    [
        "llama",
        # Slow: the fast suite has the llama run (the same pipeline), the cached beam search above, and each
        # family's numerics (and PST training on Llama) in test_decoders.py.
        pytest.param("mistral_window_4", marks=pytest.mark.slow),
        pytest.param("mistral_no_window", marks=pytest.mark.slow),
        pytest.param("gemma", marks=pytest.mark.slow),
        pytest.param("llama_remat", marks=pytest.mark.slow),  # remat's values are checked fast in test_decoders.py
    ],
)
def test_pst_smoke_run_exports_floor_s_n_zeros_per_kernel_and_stock_class_loads_it(name, decoder_folder, tmp_path):
    model_type, window = RUNS[name]
    folder = decoder_folder(model_type, window)
    results = run(dataclasses.replace(_decoder_smoke_config(folder, tmp_path), remat="remat" in name), hub_ok=NEVER)
    assert results["status"] == "finished" and results["steps"] == 2 and results["target_sparsity"] == 0.9
    assert np.isfinite([results["initial_validation_loss"], results["final"]["validation_loss"]]).all()
    assert json.loads((tmp_path / "config.json").read_text())["max_length"] == 64
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    examples = load_nlg_dir("e2e", FIXTURES / "nlg" / "e2e")["test"][:3]
    assert [r["source"] for r in rows] == [e.source for e in examples]
    assert results["generation"]["inputs"] == 3 and {"BLEU", "TER"} <= set(results["metrics"])

    # the checkpoint loads with transformers' own class; each of the 7 kernels of each layer has exactly
    # floor(0.9 * n) zeros, and every other weight is the initial one (no zero added: Gemma's norms start at 0)
    exported = STOCK[model_type].from_pretrained(tmp_path / "sparse_model")
    initial = STOCK[model_type].from_pretrained(folder)
    assert type(exported) is STOCK[model_type] and getattr(exported.config, "sliding_window", None) == window
    layers = exported.config.num_hidden_layers
    kernels = _layer_kernels(exported.params, layers)
    assert len(kernels) == 7 * layers == 14
    for path, kernel in kernels.items():
        assert int(np.sum(kernel == 0)) == math.floor(0.9 * kernel.size), path
    before, after = flatten(initial.params), flatten(exported.params)
    assert set(after) == set(before) and ("lm_head/kernel" in after) == (model_type != "gemma")
    for path in set(after) - set(kernels):
        assert np.sum(np.asarray(after[path]) == 0) == np.sum(np.asarray(before[path]) == 0), path
        np.testing.assert_array_equal(np.asarray(after[path]), np.asarray(before[path]), err_msg=path)


def _unloadable_folder(to: Path, tokenizer, **config_changes) -> str:
    """A llama folder whose weights file is empty: whatever must stop before the weights load can be tested
    without building a model."""
    config = small_config("llama", len(tokenizer), hidden_size=32, special_tokens=special_token_ids(tokenizer))
    config.save_pretrained(to)
    tokenizer.save_pretrained(to)
    (to / "flax_model.msgpack").write_bytes(b"")
    saved = json.loads((to / "config.json").read_text())
    (to / "config.json").write_text(json.dumps({**saved, **config_changes}))
    return str(to)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
            r"cannot be computed correctly here: rope_scaling type 'yarn'",
        ),
        ({"num_key_value_heads": 3}, "cannot be computed correctly here: num_key_value_heads=3 does not divide"),
        ({"vocab_size": 50000}, "has 50257 tokens, more than the model's vocabulary of 50000"),
        ({"model_type": "mpt"}, r"is a 'mpt' model; the NLG tasks here take GPT-2 \(gpt2\) or a decoder of type llama"),
    ],
)
def test_a_decoder_it_cannot_take_is_a_one_line_error_before_weights_load(
    changes, message, bos_tokenizer, tmp_path, monkeypatch
):
    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were loaded before the config was checked")

    monkeypatch.setattr("pst_jax.nlg.model.load_decoder", no_weights)
    folder = _unloadable_folder(tmp_path / "model", bos_tokenizer, **changes)
    with pytest.raises(ValueError, match=message) as error:
        run(_decoder_smoke_config(folder, tmp_path / "out"), hub_ok=NEVER)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_a_tokenizer_without_eos_is_a_one_line_error_before_weights_load(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "gpt2_tokenizer", eos_token=None)
    folder = _unloadable_folder(tmp_path / "model", tokenizer)  # its empty weights file would fail to load
    with pytest.raises(ValueError, match=r"tokenizer of model .* has no eos token") as error:
        run(_decoder_smoke_config(folder, tmp_path / "out"), hub_ok=NEVER)
    assert "\n" not in str(error.value)


def test_tiny_decoder_launcher_refuses_bad_sizes_in_one_line(capsys, tmp_path):
    tokenizer = str(FIXTURES / "gpt2_tokenizer")
    out = tmp_path / "model"
    assert (
        tiny_decoder.main(
            ["--family", "gemma", "--tokenizer", tokenizer, "--output_dir", str(out), "--sliding_window", "4"]
        )
        == 2
    )
    assert capsys.readouterr().err == "error: sliding_window is Mistral's; a gemma model has none\n"
    assert (
        tiny_decoder.main(
            ["--family", "llama", "--tokenizer", tokenizer, "--output_dir", str(out), "--num_kv_heads", "3"]
        )
        == 2
    )
    assert capsys.readouterr().err == "error: num_key_value_heads=3 does not divide num_attention_heads=4\n"
    assert not out.exists()


def test_remat_on_gpt2_is_a_one_line_error_before_weights_load(gpt2_folder, tmp_path):
    config = dataclasses.replace(_decoder_smoke_config(gpt2_folder, tmp_path / "out"), remat=True)
    with pytest.raises(ValueError, match=r"^--remat takes a decoder of type llama, mistral, gemma; model .* is GPT-2$"):
        run(config, hub_ok=NEVER)
    assert not (tmp_path / "out").exists()
