"""A Llama, Mistral or Gemma checkpoint from the hub (PyTorch-format safetensors shards) as Flax weights, no torch.

    python -m experiments.convert_decoder --model meta-llama/Llama-2-7b-hf --output_dir checkpoints/llama-2-7b

Then ``--model checkpoints/llama-2-7b`` in ``experiments.nlg``. The folder holds the config, the tokenizer and
the weights in the checkpoint's dtype (bfloat16 for these). The library part is :mod:`pst_jax.models.convert`.
"""

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="hub id or folder of the checkpoint (config, tokenizer, safetensors)")
    p.add_argument("--output_dir", required=True, help="folder to write the Flax checkpoint to")
    args = p.parse_args(argv)
    if Path(args.output_dir).exists() and any(Path(args.output_dir).iterdir()):
        print(f"error: --output_dir {args.output_dir} is not empty; give a new folder", file=sys.stderr)
        return 2

    from pst_jax.models.convert import convert_checkpoint

    try:
        out = convert_checkpoint(args.model, args.output_dir)
    except (OSError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(f"wrote the Flax checkpoint of {args.model} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
