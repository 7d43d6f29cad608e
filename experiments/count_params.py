"""Trainable-parameter counts of PST on standard architectures, from shapes only (nothing downloaded).

    python -m experiments.count_params                 # the table in README.md
    python -m experiments.count_params --weight_rank 16 --mask_rank 16

Expected (ranks 8/8): BERT-base 2,820,096 PST parameters, 1.45% of what movement pruning trains; Llama-2-7B
42,475,520 (0.32%). LoRA at rank ``--weight_rank`` on the same matrices, for comparison (it does not sparsify).
"""

import argparse
import logging

from transformers import (
    BertConfig,
    FlaxBertForSequenceClassification,
    FlaxGPT2LMHeadModel,
    FlaxRobertaForSequenceClassification,
    GPT2Config,
    RobertaConfig,
)

from pst_jax import PSTConfig, count_parameters, make_plan, param_shapes, rules_for
from pst_jax.bench.models import model_class, model_config
from pst_jax.methods.registry import trainable_parameters

# Published hyper-parameters of each checkpoint, so no config is fetched from the model hub.
ARCHITECTURES = {
    "bert-base-uncased": (FlaxBertForSequenceClassification, BertConfig(num_labels=2)),
    "bert-large-uncased": (
        FlaxBertForSequenceClassification,
        BertConfig(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, num_labels=2
        ),
    ),
    "roberta-base": (
        FlaxRobertaForSequenceClassification,
        RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, num_labels=2),
    ),
    "gpt2": (FlaxGPT2LMHeadModel, GPT2Config()),
    "gpt2-medium": (FlaxGPT2LMHeadModel, GPT2Config(n_embd=1024, n_layer=24, n_head=16)),
    "gpt2-large": (FlaxGPT2LMHeadModel, GPT2Config(n_embd=1280, n_layer=36, n_head=20)),
    "gpt2-xl": (FlaxGPT2LMHeadModel, GPT2Config(n_embd=1600, n_layer=48, n_head=25)),
    **{
        name: (model_class(config), config)
        for name, config in ((n, model_config(n)) for n in ("llama-2-7b", "llama-3-8b", "mistral-7b", "gemma-7b"))
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ARCHITECTURES), help="comma-separated, from: %(default)s")
    parser.add_argument("--weight_rank", type=int, default=8, help="rank of PST's U @ V and LoRA's rank (default 8)")
    parser.add_argument("--mask_rank", type=int, default=8, help="rank of PST's A @ B (default 8)")
    args = parser.parse_args()
    logging.getLogger("pst_jax").setLevel(logging.WARNING)
    config = PSTConfig(weight_rank=args.weight_rank, mask_rank=args.mask_rank)
    unknown = sorted(set(args.models.split(",")) - set(ARCHITECTURES))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(ARCHITECTURES)}")

    print(
        "| model | parameters | sparsified matrices | PST trainable | movement pruning trainable | PST / MvP "
        f"| LoRA r={args.weight_rank} trainable | PST / LoRA |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        cls, hf_config = ARCHITECTURES[name]
        shapes = param_shapes(cls, hf_config)
        plan = make_plan(shapes, rules_for(hf_config.model_type))
        c = count_parameters(shapes, plan, config, train_head=False)
        lora = trainable_parameters("lora", shapes, plan, rank=args.weight_rank, train_head=False)
        print(
            f"| {name} | {c.model:,} | {len(plan.matrices)} | {c.pst:,} | {c.movement_pruning_trainable:,} "
            f"| {100 * c.pst_vs_movement:.2f}% | {lora:,} | {c.pst / lora:.2f}x |"
        )


if __name__ == "__main__":
    main()
