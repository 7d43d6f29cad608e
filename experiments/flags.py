"""What the launchers share: the method's flags (:class:`MethodConfig`) and running a config with one-line errors."""

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from pst_jax.methods.registry import METHOD_NAMES
from pst_jax.training.errors import InputError
from pst_jax.training.method_config import MethodConfig


def flag_adder(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> Callable[..., None]:
    """``add(name, **kwargs)`` adding ``--name`` to ``p`` unless ``name`` is in ``skip``."""

    def add(name: str, **kwargs) -> None:
        if name not in skip:
            p.add_argument(f"--{name}", **kwargs)

    return add


def add_method_flags(add: Callable[..., None], defaults: MethodConfig) -> None:
    """A flag for every :class:`MethodConfig` field (``--freeze_head`` for ``train_head``)."""
    add("method", default=defaults.method, help=f"one of {', '.join(METHOD_NAMES)} (lora's rank is --weight_rank)")
    add("sparsity", type=float, default=defaults.sparsity, help="final sparsity of each matrix")
    add("initial_sparsity", type=float, default=defaults.initial_sparsity)
    add("initial_warmup", type=float, default=defaults.initial_warmup, help="fraction of steps dense")
    add("final_warmup", type=float, default=defaults.final_warmup, help="fraction at final sparsity")
    add("weight_rank", type=int, default=defaults.weight_rank)
    add("mask_rank", type=int, default=defaults.mask_rank)
    add("beta", type=float, default=defaults.beta, help="scale of the weight update U @ V")
    add("alpha1", type=float, default=defaults.alpha1, help="scale of the low-rank importance A @ B")
    add("alpha2", type=float, default=defaults.alpha2, help="scale of the structured importance R, C")
    add("weight_init_std", type=float, help="initial std of V in U @ V (default 1/sqrt(weight_rank); the authors': 1)")
    add("freeze_head", action="store_true", help="train only the PST factors, as the reference code")
    add("scores_learning_rate", type=float, help="movement pruning's scores (reference: 1e-2); default --learning_rate")


def method_fields(args: dict) -> dict:
    """Parsed flags with ``freeze_head`` turned back into the ``train_head`` field."""
    args = dict(args)
    args["train_head"] = not args.pop("freeze_head")
    return args


def launch(
    run: Callable[[Any], dict[str, Any]], config: Any, summary: Callable[[dict[str, Any]], dict[str, Any]]
) -> int:
    """Runs ``config``; prints ``summary(results)`` as JSON, or bad input as one ``error:`` line (exit code 2)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        results = run(config)
    except InputError as error:  # bad input: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary(results), indent=2))
    print(f"outputs in {config.output_dir}")
    return 0
