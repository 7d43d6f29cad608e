"""Side by side with the authors' code: both PST implementations on the same split and batches, over seeds.

Given a folder holding the authors' ``pst`` package (``alibaba/AliceMind``, ``S4/PST``) and a Python that has
torch and transformers (a scratch virtualenv outside this repository; this project stays torch-free), trains
the embedded MiniLM on a held-out Rotten Tomatoes split with both implementations and the same settings, seed
by seed, on the same batches (``experiments/reference_torch.py`` runs theirs), and prints the dev accuracy
after every epoch: each seed, the mean and the spread.

``--trace N`` instead starts both from the same factors and head (ours, copied into theirs), dropout off, and
compares them step by step for N steps: loss, gradient norms of the factors and of the head, the median
``|U @ V| / |W0|`` over the matrices, and every ``--masks_every`` steps the share of mask entries that agree;
it names the first step where they part. Use ``--optimizer torch`` there: ``torch.optim.AdamW`` has optax's
semantics (``eps`` after the bias correction), the authors' ``transformers.AdamW`` does not.

Example (about 20 minutes a seed and implementation on 2 CPU cores)::

    python -m experiments.reference_check --reference_dir ~/PST --torch_python ~/torchenv/bin/python \\
        --learning_rate 5e-4 --seeds 43,44,45 --freeze_head
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pst_jax.core.rules import make_plan, read_matrix, rules_for
from pst_jax.glue.config import GlueConfig
from pst_jax.glue.loaders import load_rotten_tomatoes
from pst_jax.glue.run import encode_split
from pst_jax.glue.sources import embedded_model_path
from pst_jax.glue.tasks import get_task
from pst_jax.training.losses import classification_loss
from pst_jax.training.method_config import build_method, sparsity_schedule
from pst_jax.training.optim import make_optimizer
from pst_jax.training.sharding import make_mesh, shard_batch
from pst_jax.training.step import init_train_state, jit_train_step, make_train_step

TORCH_SIDE = Path(__file__).with_name("reference_torch.py")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference_dir", required=True, help="folder holding the authors' `pst` package (pst/sparse.py)")
    p.add_argument("--torch_python", required=True, help="a Python executable with torch and transformers")
    p.add_argument("--learning_rate", type=float, default=5e-4, help="peak learning rate (linear decay)")
    p.add_argument("--seeds", default="43,44,45", help="comma-separated seeds")
    p.add_argument("--epochs", type=int, default=3, help="training epochs")
    p.add_argument("--train_rows", type=int, default=8000, help="first N training rows of the embedded data")
    p.add_argument("--eval_rows", type=int, default=1500, help="first N dev rows")
    p.add_argument("--batch_size", type=int, default=32, help="training batch")
    p.add_argument("--max_length", type=int, default=64, help="tokens per row")
    p.add_argument("--freeze_head", action="store_true", help="train only the factors (the authors' script)")
    p.add_argument(
        "--optimizer",
        choices=("transformers", "torch"),
        default="transformers",
        help="the reference side's AdamW: transformers' (eps 1e-6 before bias correction) or torch's",
    )
    p.add_argument(
        "--weight_init_std",
        type=float,
        default=1.0,
        help="initial std of V (their U) on both sides: the authors' 1.0; pst_jax's default is 1/sqrt(rank)",
    )
    p.add_argument("--trace", type=int, default=0, help="compare the first N steps from one start, dropout off")
    p.add_argument("--masks_every", type=int, default=10, help="with --trace: compare masks every N steps")
    p.add_argument("--output_dir", default="runs/reference-check", help="where the per-seed results go")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """One-line ``SystemExit`` for a missing reference folder or a Python without torch."""
    for name in ("pst/sparse.py", "pst/utils.py"):
        if not (Path(args.reference_dir).expanduser() / name).is_file():
            sys.exit(f"error: --reference_dir {args.reference_dir} has no {name} (the authors' S4/PST folder)")
    probe = [args.torch_python, "-c", "import torch, transformers"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        sys.exit(f"error: --torch_python {args.torch_python} cannot import torch and transformers")
    if min(args.epochs, args.train_rows, args.eval_rows, args.batch_size, args.learning_rate) <= 0:
        sys.exit("error: --epochs, --train_rows, --eval_rows, --batch_size and --learning_rate must be positive")


def split_arrays(args, tokenizer) -> dict[str, np.ndarray]:
    """The held-out split, tokenised and padded to ``--max_length`` (one shape: the same batches on both sides)."""
    task = get_task("sst2")
    data = load_rotten_tomatoes(validation_size=args.eval_rows, seed=0)
    splits = {
        "train": data["train"].select(range(min(args.train_rows, data["train"].num_rows))),
        "dev": data["validation"],
    }
    arrays = {}
    for name, split in splits.items():
        encoded = encode_split(tokenizer, split, task, args.max_length)
        ids = np.zeros((len(encoded.labels), args.max_length), np.int32)
        for i, row in enumerate(encoded.input_ids):
            ids[i, : len(row)] = row
        arrays[f"{name}_input_ids"], arrays[f"{name}_attention_mask"] = ids, (ids != 0).astype(np.int32)
        arrays[f"{name}_labels"] = np.asarray(encoded.labels, np.int32)
    return arrays


def batch_order(n: int, epochs: int, batch_size: int, seed: int) -> np.ndarray:
    """``(epochs, steps, batch)`` row indices: a fresh permutation per epoch, the last partial batch dropped."""
    rng = np.random.default_rng(seed)
    steps = n // batch_size
    return np.stack([rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size) for _ in range(epochs)])


def torch_name(matrix: str) -> str:
    """``bert/encoder/layer/0/attention/self/query/kernel`` -> ``layer.0.attention.self.query``."""
    return matrix.removeprefix("bert/encoder/").removesuffix("/kernel").replace("/", ".")


class Ours:
    """Our PST on the split's batches, built from a :class:`GlueConfig` as ``experiments.glue`` builds it."""

    def __init__(self, args, model, plan, seed: int, total_steps: int, dropout: bool = True):
        self.cfg = GlueConfig(
            learning_rate=args.learning_rate,
            train_head=not args.freeze_head,
            seed=seed,
            weight_init_std=args.weight_init_std,
        )
        self.model, self.plan = model, plan
        self.method = build_method(self.cfg, plan)
        self.schedule, _ = sparsity_schedule(self.cfg, self.method, total_steps)
        optimizer = make_optimizer(self.method, args.learning_rate, total_steps)
        self.mesh = make_mesh(jax.local_devices()[:1])
        self.state, self.frozen = init_train_state(
            jax.random.key(seed), model.params, self.method, optimizer, self.mesh
        )
        loss_fn = classification_loss(model)
        if not dropout:
            loss_fn = (lambda f: lambda params, batch, rng: f(params, batch, None))(loss_fn)
        self.step_fn = jit_train_step(make_train_step(loss_fn, self.method, optimizer), self.mesh)
        self.logits = jax.jit(lambda tr, fr, batch, s: loss_fn(self.method.effective_params(tr, fr, s), batch, None)[1])
        self.t = 0

    def step(self, arrays, rows) -> dict:
        batch = {k: arrays[f"train_{k}"][rows] for k in ("input_ids", "attention_mask", "labels")}
        sparsity = self.schedule(self.t)
        self.state, metrics = self.step_fn(self.state, self.frozen, shard_batch(batch, self.mesh), sparsity)
        self.t += 1
        return metrics

    def accuracy(self, arrays, batch_size: int = 128) -> float:
        n, correct = len(arrays["dev_labels"]), 0
        for start in range(0, n, batch_size):
            rows = np.arange(start, min(n, start + batch_size))
            batch = {k: jnp.asarray(arrays[f"dev_{k}"][rows]) for k in ("input_ids", "attention_mask", "labels")}
            logits = self.logits(self.state.trainable, self.frozen, batch, jnp.float32(self.schedule(self.t)))
            correct += int(np.sum(np.argmax(np.asarray(logits["logits"]), -1) == batch["labels"]))
        return 100.0 * correct / n

    def uv_ratios(self) -> dict[str, float]:
        out = {}
        for m in self.plan.matrices:
            f = self.state.trainable["pst"][m.name]
            kernel = np.asarray(read_matrix(self.frozen[m.path], m))
            out[torch_name(m.name)] = float(np.sqrt(np.mean(np.asarray(f["U"] @ f["V"]) ** 2) / np.mean(kernel**2)))
        return out

    def masks(self) -> dict[str, np.ndarray]:
        found = self.method.masks(self.state.trainable, self.frozen, jnp.float32(self.schedule(self.t)))
        return {torch_name(n): np.asarray(m).astype(bool) for n, m in found.items()}

    def init_for_torch(self) -> dict[str, np.ndarray]:
        """Our initial factors and head, keyed as ``reference_torch.load_init`` reads them."""
        out = {}
        for name, factors in self.state.trainable["pst"].items():
            for f, value in factors.items():
                out[f"bert.encoder.{torch_name(name)}/{f}"] = np.asarray(value)
        head = {**self.frozen, **self.state.trainable["head"]}
        out["classifier/kernel"] = np.asarray(head["classifier/kernel"])
        out["classifier/bias"] = np.asarray(head["classifier/bias"])
        return out


def run_torch(args, data_path: Path, seed: int, mode: str, extra: list[str]) -> list[dict]:
    """The authors' side (``reference_torch.py`` under ``--torch_python``): one JSON record per line."""
    command = [
        args.torch_python,
        str(TORCH_SIDE),
        "--reference_dir",
        str(Path(args.reference_dir).expanduser()),
        "--model",
        embedded_model_path(),
        "--data",
        str(data_path),
        "--mode",
        mode,
        "--seed",
        str(seed),
        "--learning_rate",
        str(args.learning_rate),
        "--optimizer",
        args.optimizer,
        "--weight_init_std",
        str(args.weight_init_std),
        *extra,
    ]
    if args.freeze_head:
        command.append("--freeze_head")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        sys.exit(f"error: the reference side ({TORCH_SIDE.name}) failed: {last}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def seed_runs(args, load, plan, arrays, out: Path) -> dict:
    """Every seed on both sides; returns ``{"ours": {seed: [acc per epoch]}, "authors": {...}}``."""
    runs: dict[str, dict[int, list[float]]] = {"ours": {}, "authors": {}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        order = batch_order(len(arrays["train_labels"]), args.epochs, args.batch_size, seed)
        data_path = out / f"data_seed{seed}.npz"
        np.savez(data_path, order=order, **arrays)
        ours = Ours(args, load(seed), plan, seed, order.shape[0] * order.shape[1])
        runs["ours"][seed] = []
        for epoch in range(args.epochs):
            for rows in order[epoch]:
                ours.step(arrays, rows)
            runs["ours"][seed].append(ours.accuracy(arrays))
            print(f"ours    seed {seed} epoch {epoch + 1}: {runs['ours'][seed][-1]:.1f}", flush=True)
        runs["authors"][seed] = [r["accuracy"] for r in run_torch(args, data_path, seed, "seed", [])]
        print(f"authors seed {seed}: {' / '.join(f'{a:.1f}' for a in runs['authors'][seed])}", flush=True)
    return runs


def summary_table(runs: dict) -> str:
    """Markdown: per implementation and epoch, each seed's accuracy, the mean and the standard deviation."""
    lines = ["| implementation | epoch | per seed | mean | std |", "| --- | ---: | --- | ---: | ---: |"]
    for impl, by_seed in runs.items():
        for epoch in range(min(len(v) for v in by_seed.values())):
            values = np.array([v[epoch] for v in by_seed.values()])
            seeds = ", ".join(f"{s}: {v[epoch]:.1f}" for s, v in by_seed.items())
            lines.append(f"| {impl} | {epoch + 1} | {seeds} | {values.mean():.1f} | {values.std():.1f} |")
    return "\n".join(lines)


def trace(args, model, plan, arrays, out: Path) -> list[dict]:
    """Both sides from our initial factors and head, dropout off, on seed ``--seeds[0]``'s batches."""
    seed = int(args.seeds.split(",")[0])
    order = batch_order(len(arrays["train_labels"]), args.epochs, args.batch_size, seed)
    total = order.shape[0] * order.shape[1]
    ours = Ours(args, model, plan, seed, total, dropout=False)
    data_path, init_path = out / "trace_data.npz", out / "trace_init.npz"
    np.savez(data_path, order=order, **arrays)
    np.savez(init_path, **ours.init_for_torch())
    masks_prefix = str(out / "trace_masks_step")
    for stale in out.glob("trace_masks_step*.npz"):
        stale.unlink()
    theirs = run_torch(
        args,
        data_path,
        seed,
        "trace",
        [
            "--init",
            str(init_path),
            "--masks_every",
            str(args.masks_every),
            "--masks_prefix",
            masks_prefix,
            "--max_steps",
            str(args.trace),
        ],
    )
    records = []
    for ref, rows in zip(theirs, order.reshape(-1, args.batch_size), strict=False):
        record = {"step": ref["step"], "sparsity": ref["sparsity"]}
        ratios = ours.uv_ratios()
        mask_path = Path(f"{masks_prefix}{ref['step']}.npz")
        if mask_path.exists():
            their_masks = np.load(mask_path)
            agree = [np.mean(m.ravel() == np.unpackbits(their_masks[n])[: m.size]) for n, m in ours.masks().items()]
            record["mask_agreement"] = float(np.mean(agree))
        metrics = ours.step(arrays, rows)
        record["loss"] = [float(metrics["loss"]), ref["loss"]]
        norms = metrics["grad_norms"]
        record["grad_norm_pst"] = [float(norms["pst"]), ref["grad_norm_pst"]]
        record["grad_norm_head"] = [float(norms["head"]) if "head" in norms else 0.0, ref["grad_norm_head"]]
        record["uv_ratio_median"] = [
            float(np.median(list(ratios.values()))),
            float(np.median(list(ref["uv_ratio"].values()))),
        ]
        records.append(record)
    return records


def parted(record: dict, rtol: float = 1e-2, mask_agreement: float = 0.999) -> bool:
    """Whether the two sides differ at this step by more than ``rtol`` in a compared value, or their masks
    agree on fewer than ``mask_agreement`` of the entries (a few flips where two scores are within rounding
    of each other are expected: float32 sums in another order)."""
    pairs = [record[k] for k in ("loss", "grad_norm_pst", "grad_norm_head", "uv_ratio_median")]
    return (
        any(abs(a - b) > rtol * max(abs(a), abs(b), 1e-12) for a, b in pairs)
        or record.get("mask_agreement", 1.0) < mask_agreement
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    check_args(args)
    from transformers import AutoTokenizer, FlaxAutoModelForSequenceClassification

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    arrays = split_arrays(args, tokenizer)

    def load(seed: int):
        return FlaxAutoModelForSequenceClassification.from_pretrained(path, num_labels=2, seed=seed)

    model = load(int(args.seeds.split(",")[0]))
    plan = make_plan(model.params, rules_for(model.config.model_type))
    if args.trace:
        records = trace(args, model, plan, arrays, out)
        (out / "trace.json").write_text(json.dumps(records, indent=1) + "\n")
        for r in records:
            print(json.dumps(r))
        first = next((r["step"] for r in records if parted(r)), None)
        print(
            f"first step where they part (rtol 1e-2, masks 99.9%): {first if first else 'none in ' + str(len(records))}"
        )
        return
    runs = seed_runs(args, load, plan, arrays, out)
    settings = {k: v for k, v in vars(args).items() if k not in ("torch_python", "reference_dir")}
    (out / "seeds.json").write_text(json.dumps({"settings": settings, "runs": runs}, indent=2) + "\n")
    print(summary_table(runs))


if __name__ == "__main__":
    main()
