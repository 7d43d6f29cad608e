"""Hub-style checkpoints (PyTorch-format safetensors shards) to Flax: the weights come back bit for bit."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.flax import save_file
from transformers import AutoTokenizer, FlaxGemmaForCausalLM, FlaxLlamaForCausalLM

from experiments import convert_decoder
from pst_jax.core.rules import flatten
from pst_jax.models import load_decoder
from tests import tiny

TOKENIZER = Path(__file__).parent / "fixtures" / "gpt2_tokenizer"


def _pytorch_state(params) -> dict[str, jax.Array]:
    """The params under PyTorch's names and layouts, written out here (not with transformers' mapping): a Linear's
    ``weight`` is the Flax kernel transposed; embeddings and norms keep their layout."""
    state = {}
    for path, value in flatten(params).items():
        *module, leaf = path.split("/")
        name = ".".join(module) + ".weight"
        state[name] = value.T if leaf == "kernel" else value
    return state


def _hub_folder(folder: Path, model, dtype, extra: dict | None = None, drop: str | None = None) -> Path:
    """``model`` saved as the hub holds 7B checkpoints: config, tokenizer, two PyTorch-format shards and an index."""
    state = {k: v.astype(dtype) for k, v in _pytorch_state(model.params).items()} | (extra or {})
    state.pop(drop, None)
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    folder.mkdir()
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, folder / file, metadata={"format": "pt"})
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    model.config.save_pretrained(folder)
    AutoTokenizer.from_pretrained(TOKENIZER).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("family", "stock"), [("llama", FlaxLlamaForCausalLM), ("gemma", FlaxGemmaForCausalLM)])
def test_sharded_pytorch_safetensors_convert_to_the_same_weights(family, stock, tmp_path, capsys):
    model = tiny.decoder(family, seed=3)
    rotary = {"model.layers.0.self_attn.rotary_emb.inv_freq": jnp.ones(4)}  # an old buffer: no parameter of ours
    hub = _hub_folder(tmp_path / "hub", model, jnp.bfloat16, extra=rotary)
    with pytest.raises(ValueError, match="python -m experiments.convert_decoder --model .*hub --output_dir FOLDER"):
        load_decoder(str(hub))

    assert convert_decoder.main(["--model", str(hub), "--output_dir", str(tmp_path / "flax")]) == 0
    assert capsys.readouterr().out == f"wrote the Flax checkpoint of {hub} to {tmp_path / 'flax'}\n"
    expected = flatten(jax.tree.map(lambda x: x.astype(jnp.bfloat16), model.params))
    for loaded in (load_decoder(str(tmp_path / "flax")), stock.from_pretrained(tmp_path / "flax")):
        got = flatten(loaded.params)
        assert got.keys() == expected.keys()  # the buffer dropped, nothing missing (Gemma: no lm_head, tied)
        for path, value in expected.items():
            assert got[path].dtype == jnp.bfloat16 and np.array_equal(np.asarray(got[path]), np.asarray(value)), path
    assert (tmp_path / "flax" / "tokenizer.json").is_file()


def test_a_checkpoint_missing_a_weight_or_a_busy_output_folder_is_a_one_line_error(tmp_path, capsys):
    hub = _hub_folder(tmp_path / "hub", tiny.decoder("llama"), jnp.float32, drop="model.norm.weight")
    assert convert_decoder.main(["--model", str(hub), "--output_dir", str(tmp_path / "flax")]) == 2
    assert capsys.readouterr().err == "error: the checkpoint lacks 1 parameters of the model, e.g. model/norm/weight\n"
    assert convert_decoder.main(["--model", str(hub), "--output_dir", str(hub)]) == 2
    assert capsys.readouterr().err == f"error: --output_dir {hub} is not empty; give a new folder\n"
