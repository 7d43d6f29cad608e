"""A hub checkpoint of a Llama, Mistral or Gemma (PyTorch-format safetensors, often in shards) as Flax weights,
without PyTorch.

transformers' Flax ``from_pretrained`` reads one PyTorch-format ``model.safetensors`` but not the shards every
7B checkpoint comes in (``model.safetensors.index.json``: "coming soon"), and reading ``.bin`` files needs torch.
:func:`convert_checkpoint` reads the shards with ``safetensors`` (bfloat16 kept), renames and transposes them as
transformers' own PyTorch-to-Flax mapping does (checked against the model's parameter shapes, built from the
config with nothing allocated) and writes a folder that :func:`~pst_jax.models.decoders.load_decoder`,
``experiments.nlg --model`` and the stock Flax class load. Host memory: about twice the checkpoint's size.

Example::

    convert_checkpoint("meta-llama/Llama-2-7b-hf", "checkpoints/llama-2-7b-flax")  # or a local folder
"""

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
from flax.traverse_util import flatten_dict, unflatten_dict
from transformers import AutoConfig, AutoTokenizer

from pst_jax.models.decoders import MODEL_TYPES, check_config, decoder_class

logger = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"
FLAX_WEIGHTS = ("flax_model.msgpack", "flax_model.msgpack.index.json")


def needs_conversion(folder: str | Path) -> bool:
    """Whether ``folder`` holds sharded safetensors and no Flax weights (what ``from_pretrained`` cannot read).

    Example:
      >>> needs_conversion("/nonexistent")
      False
    """
    folder = Path(folder)
    return (folder / SHARD_INDEX).is_file() and not any((folder / name).is_file() for name in FLAX_WEIGHTS)


def read_safetensors(folder: str | Path) -> dict[str, Any]:
    """Every tensor of ``folder``'s ``model.safetensors`` or of the shards its index names, by PyTorch name."""
    folder = Path(folder)
    index = folder / SHARD_INDEX
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else [SINGLE_FILE]
    from safetensors import safe_open

    state: dict[str, Any] = {}
    for name in files:
        with safe_open(folder / name, framework="flax") as file:  # flax: bfloat16 arrays stay bfloat16
            state.update({key: file.get_tensor(key) for key in file.keys()})
    return state


def flax_params(state: dict[str, Any], config: Any) -> dict[str, Any]:
    """``state`` (PyTorch names and layouts) as the decoder's Flax parameter tree.

    Raises:
      ValueError: a tensor's shape differs from the config's, or a parameter of the model is missing.
    """
    from transformers.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax

    model = decoder_class(config.model_type)(config, _do_init=False)
    shapes = jax.eval_shape(lambda key: model.init_weights(key, (1, 1)), jax.random.key(0))
    # the mapping reads only the model's parameter shapes and prefix: no weights are allocated for it
    shim = SimpleNamespace(params=shapes, base_model_prefix=model.base_model_prefix)
    converted = flatten_dict(convert_pytorch_state_dict_to_flax(dict(state), shim))
    expected = flatten_dict(shapes)
    missing = sorted("/".join(key) for key in expected.keys() - converted.keys())
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} parameters of the model, e.g. {missing[0]}")
    ignored = sorted("/".join(key) for key in converted.keys() - expected.keys())
    if ignored:
        logger.warning("ignored %d tensors the model has no parameter for, e.g. %s", len(ignored), ignored[0])
    return unflatten_dict({key: converted[key] for key in expected})


def resolve_folder(model: str) -> Path:
    """``model`` itself if it is a folder, else the local snapshot of the hub repository (downloaded if needed)."""
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]
    return Path(snapshot_download(model, allow_patterns=patterns))


def convert_checkpoint(model: str, output_dir: str | Path) -> Path:
    """Writes ``model``'s config, tokenizer and weights (Flax format, the checkpoint's dtypes) to ``output_dir``.

    Args:
      model: a folder or hub id of a ``llama``, ``mistral`` or ``gemma`` checkpoint in safetensors.
      output_dir: the folder to write.

    Raises:
      ValueError: an unsupported model type or config (:func:`~pst_jax.models.decoders.check_config`), or weights
        that do not fit the config.
    """
    folder = resolve_folder(model)
    config = AutoConfig.from_pretrained(folder)
    if config.model_type not in MODEL_TYPES:
        raise ValueError(f"{model} is a {config.model_type!r} model; convert_checkpoint takes {', '.join(MODEL_TYPES)}")
    check_config(config)
    params = flax_params(read_safetensors(folder), config)
    output_dir = Path(output_dir)
    decoder_class(config.model_type)(config, _do_init=False).save_pretrained(output_dir, params=params)
    AutoTokenizer.from_pretrained(folder).save_pretrained(output_dir)
    return output_dir
