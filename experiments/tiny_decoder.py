"""A small random Llama, Mistral or Gemma saved with a tokenizer: a decoder LLM for CPU runs without the hub.

    python -m experiments.tiny_decoder --family llama --tokenizer ../shared/data/gpt2_tokenizer \\
        --output_dir runs/tiny-llama

The folder loads like a pretrained checkpoint (``--model runs/tiny-llama`` in ``experiments.nlg``, or
transformers' ``FlaxLlamaForCausalLM``). Its weights are random, so it shows the pipeline working, not a result.
The library part is :mod:`pst_jax.models.small`.
"""

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", required=True, choices=("llama", "mistral", "gemma"), help="the decoder family")
    p.add_argument("--tokenizer", required=True, help="folder of a Hugging Face tokenizer (e.g. GPT-2's)")
    p.add_argument("--output_dir", required=True, help="folder to write the model and tokenizer to")
    p.add_argument("--hidden_size", type=int, default=64, help="width")
    p.add_argument("--num_layers", type=int, default=2, help="decoder layers")
    p.add_argument("--num_heads", type=int, default=4, help="query heads (head_dim = hidden_size / heads)")
    p.add_argument("--num_kv_heads", type=int, default=2, help="key-value heads (grouped-query attention)")
    p.add_argument("--max_positions", type=int, default=512, help="max_position_embeddings")
    p.add_argument("--sliding_window", type=int, default=None, help="Mistral's attention window (default: none)")
    p.add_argument("--initializer_range", type=float, default=0.2, help="std of the random weights (families: 0.02)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = p.parse_args(argv)
    if not Path(args.tokenizer).is_dir():
        print(f"error: --tokenizer {args.tokenizer} is not a folder", file=sys.stderr)
        return 2

    from transformers import AutoTokenizer

    from pst_jax.models.small import save_random_decoder, small_config, special_token_ids

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    try:
        config = small_config(
            args.family,
            len(tokenizer),
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            num_kv_heads=args.num_kv_heads,
            max_position_embeddings=args.max_positions,
            sliding_window=args.sliding_window,
            initializer_range=args.initializer_range,
            special_tokens=special_token_ids(tokenizer),
        )
        save_random_decoder(config, tokenizer, args.output_dir, seed=args.seed)
    except ValueError as error:  # a size the family's config or check_config refuses
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    size = f"{args.num_layers}-layer, {args.hidden_size}-wide"
    print(f"saved a random {size} {args.family} and its tokenizer to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
