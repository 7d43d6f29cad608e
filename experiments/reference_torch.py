"""The authors' PST in a small PyTorch loop: the reference side of ``python -m experiments.reference_check``.

Run by ``experiments.reference_check`` under a Python that has torch and transformers (never imported by
``pst_jax``, which stays torch-free). It imports the authors' ``pst`` package (``SparseLinear``,
``convert_sparse_network``, ``schedule_sparsity_ratio``, ``update_network_sparsity``) from the folder given
with ``--reference_dir``; none of their code is copied here. What this file adds is what their
``run_glue.py`` does around it, on the batches ``reference_check`` wrote: AdamW over the factors (and the
head unless frozen), linear decay without warm-up, the sparsity updated after every optimizer step,
evaluation after every epoch.

Two modes:
  * ``seed``: train with this seed's own initialisation (``torch.manual_seed``), dropout on, as their script
    does; print one JSON line per epoch with the dev accuracy.
  * ``trace``: start from the factors and head given in ``--init`` (the JAX side's), dropout off, and print
    one JSON line per step: loss, gradient norms per group, each matrix's mask and ``|U @ V| / |W0|``.
"""

import argparse
import json
import logging
import math
import sys

import numpy as np
import torch


class HFAdamW(torch.optim.Optimizer):
    """``transformers.AdamW`` semantics (removed from transformers 4.57): ``eps`` added to ``sqrt(v)``
    before the bias correction, which is folded into the step size."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-6):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                state["step"] += 1
                state["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                size = group["lr"] * math.sqrt(1 - b2 ** state["step"]) / (1 - b1 ** state["step"])
                p.addcdiv_(state["m"], state["v"].sqrt().add_(group["eps"]), value=-size)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference_dir", required=True, help="folder holding the authors' `pst` package")
    p.add_argument("--model", required=True, help="the pretrained BERT folder (safetensors)")
    p.add_argument("--data", required=True, help="the .npz reference_check wrote (ids, masks, labels, order)")
    p.add_argument("--mode", choices=("seed", "trace"), default="seed")
    p.add_argument("--init", help="trace mode: .npz with the JAX side's initial factors and head")
    p.add_argument("--seed", type=int, default=43)
    p.add_argument("--learning_rate", type=float, required=True)
    p.add_argument("--optimizer", choices=("transformers", "torch"), default="transformers")
    p.add_argument("--freeze_head", action="store_true")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--initial_warmup", type=float, default=0.1)
    p.add_argument("--final_warmup", type=float, default=0.3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--weight_init_std", type=float, default=1.0, help="seed mode: std of their random U (theirs: 1)")
    p.add_argument("--eval_batch_size", type=int, default=128)
    p.add_argument("--max_steps", type=int, default=0, help="trace mode: stop after N steps (0: every step)")
    p.add_argument("--masks_every", type=int, default=0, help="trace mode: save the masks every N steps")
    p.add_argument("--masks_prefix", default="masks_step", help="trace mode: path prefix of the mask files")
    return p.parse_args(argv)


def build(args):
    sys.path.insert(0, args.reference_dir)
    from pst.sparse import SparseLinear
    from pst.utils import convert_sparse_network
    from transformers import BertForSequenceClassification

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2)
    quiet = logging.getLogger("reference_torch")
    quiet.setLevel(logging.WARNING)
    convert_sparse_network(model.bert.encoder, "pst", args.rank, 1.0, args.rank, 1.0, 1.0, logger=quiet)
    sparse = {name: m for name, m in model.bert.encoder.named_modules() if isinstance(m, SparseLinear)}
    if args.init:
        load_init(model, sparse, np.load(args.init))
    elif args.weight_init_std != 1.0:
        with torch.no_grad():
            for m in sparse.values():
                m.weight_U.mul_(args.weight_init_std)
    factors = [p for m in sparse.values() for p in factor_params(m)]
    head = [] if args.freeze_head else list(model.classifier.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in factors + head:
        p.requires_grad_(True)
    if args.optimizer == "transformers":
        opt = HFAdamW([{"params": factors + head}], lr=args.learning_rate)
    else:
        opt = torch.optim.AdamW(factors + head, lr=args.learning_rate, weight_decay=0.0)
    return model, sparse, factors, head, opt


def factor_params(m):
    return [m.weight_U, m.weight_V, m.mask_scores_A, m.mask_scores_B, m.mask_scores_R, m.mask_scores_C]


def load_init(model, sparse, init) -> None:
    """Our ``(d_in, d_out)`` factors into their ``(out, in)`` layout: U = V^T, V = U^T, A = B^T, B = A^T."""
    with torch.no_grad():
        for name, m in sparse.items():
            key = "bert.encoder." + name
            get = lambda f, key=key: torch.from_numpy(np.ascontiguousarray(init[f"{key}/{f}"]))  # noqa: E731
            m.weight_U.copy_(get("V").T)
            m.weight_V.copy_(get("U").T)
            m.mask_scores_A.copy_(get("B").T)
            m.mask_scores_B.copy_(get("A").T)
            m.mask_scores_R.copy_(get("R"))
            m.mask_scores_C.copy_(get("C"))
        model.classifier.weight.copy_(torch.from_numpy(init["classifier/kernel"]).T)
        model.classifier.bias.copy_(torch.from_numpy(init["classifier/bias"]))


def batch_of(data, split, rows):
    ids = torch.from_numpy(data[f"{split}_input_ids"][rows]).long()
    mask = torch.from_numpy(data[f"{split}_attention_mask"][rows]).long()
    return ids, mask, torch.from_numpy(data[f"{split}_labels"][rows]).long()


@torch.no_grad()
def accuracy(model, data, batch_size) -> float:
    model.eval()
    n = len(data["dev_labels"])
    correct = 0
    for start in range(0, n, batch_size):
        ids, mask, labels = batch_of(data, "dev", np.arange(start, min(n, start + batch_size)))
        correct += int((model(input_ids=ids, attention_mask=mask).logits.argmax(-1) == labels).sum())
    return 100.0 * correct / n


def trace_record(step, loss, sparse, factors, head, sparsity) -> dict:
    """One step of the trace (before the optimizer step): loss, gradient norms, ``|U @ V| / |W0|`` per matrix."""
    norm = lambda ps: float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in ps))) if ps else 0.0  # noqa: E731
    ratios = {}
    with torch.no_grad():
        for name, m in sparse.items():
            ratios[name] = float((m.weight_U @ m.weight_V).pow(2).mean().sqrt() / m.weight.pow(2).mean().sqrt())
    return {
        "step": step,
        "loss": float(loss),
        "sparsity": float(sparsity),
        "grad_norm_pst": norm(factors),
        "grad_norm_head": norm(head),
        "uv_ratio": ratios,
    }


@torch.no_grad()
def packed_masks(sparse, sparsity) -> dict[str, np.ndarray]:
    """Each matrix's mask at ``sparsity`` from the current factors, ``(d_in, d_out)`` as ours, bit-packed."""
    from pst.sparse import SparseBinarizer

    out = {}
    for name, m in sparse.items():
        w = m.weight + m.weight_beta * m.weight_U @ m.weight_V
        scores = w.abs() + m.mask_alpha1 * m.mask_scores_A @ m.mask_scores_B
        scores = scores + m.mask_alpha2 * (m.mask_scores_R.unsqueeze(1) + m.mask_scores_C.unsqueeze(0))
        out[name] = np.packbits(SparseBinarizer.apply(scores, sparsity).T.numpy().astype(bool))
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    model, sparse, factors, head, opt = build(args)
    from pst.utils import schedule_sparsity_ratio, update_network_sparsity  # importable once build() set the path

    data = dict(np.load(args.data))
    order = data["order"]  # (epochs, steps, batch): the rows of every step's batch
    total = order.shape[0] * order.shape[1]
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: max(0.0, 1.0 - t / total))
    step, sparsity = 0, 0.0
    update_network_sparsity(model, sparsity)
    for epoch in range(order.shape[0]):
        for rows in order[epoch]:
            model.train(args.mode == "seed")
            ids, mask, labels = batch_of(data, "train", rows)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            if args.mode == "trace":
                print(json.dumps(trace_record(step + 1, loss, sparse, factors, head, sparsity)), flush=True)
                if args.masks_every and step % args.masks_every == 0:
                    np.savez(f"{args.masks_prefix}{step + 1}.npz", **packed_masks(sparse, sparsity))
            opt.step()
            scheduler.step()
            opt.zero_grad()
            step += 1
            sparsity = schedule_sparsity_ratio(step, total, args.initial_warmup, args.final_warmup, 0.0, args.sparsity)
            update_network_sparsity(model, sparsity)
            if step == args.max_steps:
                return
        if args.mode == "seed":
            acc = accuracy(model, data, args.eval_batch_size)
            print(json.dumps({"epoch": epoch + 1, "step": step, "sparsity": sparsity, "accuracy": acc}), flush=True)


if __name__ == "__main__":
    main()
