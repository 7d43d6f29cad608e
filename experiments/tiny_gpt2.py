"""A randomly initialised GPT-2 of any size, saved with a GPT-2 tokenizer: a model for CPU runs without the hub.

    python -m experiments.tiny_gpt2 --tokenizer ../shared/data/gpt2_tokenizer --output_dir runs/tiny-gpt2

The folder loads like a pretrained checkpoint (``--model runs/tiny-gpt2`` in ``experiments.nlg``). Its
weights are random, so it shows the pipeline working, not the paper's numbers.
"""

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True, help="folder of a GPT-2 tokenizer (vocab.json, merges.txt)")
    p.add_argument("--output_dir", required=True, help="folder to write the model and tokenizer to")
    p.add_argument("--n_embd", type=int, default=128, help="width")
    p.add_argument("--n_layer", type=int, default=2, help="blocks")
    p.add_argument("--n_head", type=int, default=4, help="attention heads")
    p.add_argument("--n_positions", type=int, default=512, help="longest sequence")
    p.add_argument(
        "--initializer_range",
        type=float,
        default=0.2,
        help="GPT-2 uses 0.02; larger lets a narrow model's frozen, tied embeddings give confident logits",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = p.parse_args(argv)
    if not Path(args.tokenizer).is_dir():
        print(f"error: --tokenizer {args.tokenizer} is not a folder", file=sys.stderr)
        return 2

    from transformers import AutoTokenizer, FlaxGPT2LMHeadModel, GPT2Config

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_positions=args.n_positions,
        initializer_range=args.initializer_range,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    FlaxGPT2LMHeadModel(config, seed=args.seed).save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    print(f"saved a random {args.n_layer}-layer, {args.n_embd}-wide GPT-2 and its tokenizer to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
