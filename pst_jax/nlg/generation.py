"""Generation for the data-to-text experiment: beam search on the exported sparse model, and the predictions.

:func:`generate` runs :func:`~pst_jax.nlg.beam_search.make_generate` over prompt batches on the run's mesh and
post-processes the texts as LoRA's evaluation does; :func:`write_predictions` writes them beside the references.

Example::

    split, examples = generation_inputs(cfg, data)
    texts = generate(cfg, model, params, tokenizer, examples, mesh)
    write_predictions(Path(cfg.output_dir), examples, texts)
"""

import json
import math
from pathlib import Path
from typing import Any

from jax.sharding import Mesh
from tqdm.auto import tqdm

from pst_jax.data.batching import length_buckets
from pst_jax.nlg.beam_search import decode_rows, make_generate
from pst_jax.nlg.config import NLGConfig
from pst_jax.nlg.data import NLGExample
from pst_jax.nlg.metrics import lora_postprocess
from pst_jax.nlg.rows import prompt_batches
from pst_jax.training.errors import InputError
from pst_jax.training.processes import is_writer
from pst_jax.training.sharding import replicate, shard_batch, to_host


def generate(
    cfg: NLGConfig, model: Any, params: Any, tokenizer: Any, examples: list[NLGExample], mesh: Mesh
) -> list[str]:
    """Beam-search texts of ``examples`` from ``params`` (the sparse model), in order, post-processed as LoRA's."""
    run = make_generate(
        model,
        num_beams=cfg.num_beams,
        max_new_tokens=cfg.max_new_tokens,
        length_penalty=cfg.length_penalty,
        no_repeat_ngram_size=cfg.no_repeat_ngram_size,
        eos_token_id=tokenizer.eos_token_id,
    )
    prompt_length = cfg.max_length - cfg.max_new_tokens
    buckets = length_buckets(prompt_length, smallest=16)
    params = replicate(params, mesh)
    texts = []
    batches = prompt_batches(tokenizer, [e.source for e in examples], cfg.generate_batch_size, prompt_length, buckets)
    total = math.ceil(len(examples) / cfg.generate_batch_size)
    for batch, real in tqdm(
        batches, total=total, desc=f"beam search ({cfg.num_beams} beams)", unit="batch", disable=not is_writer()
    ):
        sharded = shard_batch(batch, mesh)
        tokens = to_host(run(params, sharded["input_ids"], sharded["attention_mask"]))[:real]
        texts.extend(lora_postprocess(text) for text in decode_rows(tokenizer, tokens, tokenizer.eos_token_id))
    return texts


def generation_inputs(cfg: NLGConfig, data: dict[str, list[NLGExample]]) -> tuple[str, list[NLGExample]]:
    """``(split, examples)`` to generate for: ``--generate_split`` (default test where the data has it)."""
    split = cfg.generate_split or ("test" if data.get("test") else "validation")
    if not data.get(split):
        raise InputError(f"--generate_split {split}: the data has no {split} split; give --test_file or validation")
    return split, data[split][: cfg.max_generate_samples]


def write_predictions(out: Path, examples: list[NLGExample], texts: list[str]) -> None:
    """``predictions.jsonl`` (source, generated text, references) and ``predictions.txt`` (a text a line)."""
    with open(out / "predictions.jsonl", "w") as f:
        for example, text in zip(examples, texts, strict=True):
            row = {"source": example.source, "prediction": text, "references": list(example.references)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "predictions.txt").write_text("".join(text + "\n" for text in texts))
