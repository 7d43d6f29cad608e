"""A comparison sweep: GLUE runs over methods x sparsities, then one table (Markdown, CSV) and two plots.

Each cell of the grid is an ordinary :func:`~pst_jax.glue.run.run` in its own folder of the sweep's
output folder (``pst-90/``, ``movement-50/``, ``dense/``, ...). A cell whose folder already holds a
``results.json`` from the same settings is not rerun, so an interrupted sweep resumes where it
stopped; a folder holding results from other settings is an error, never overwritten. Methods that do
not prune (``dense``, ``lora``) run once, whatever the sparsities.

Outputs, beside the run folders: ``comparison.md``, ``comparison.csv``, ``metric_vs_sparsity.png`` and
``trainable_parameters.png``.
"""

import csv
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

from pst_jax.glue.config import GlueConfig, check_config
from pst_jax.glue.run import run
from pst_jax.glue.tasks import get_task
from pst_jax.methods.registry import SPARSE_METHODS
from pst_jax.training.errors import InputError

logger = logging.getLogger("pst_jax")

COLUMNS = (
    ("method", "method"),
    ("target_sparsity", "target sparsity"),
    ("measured_sparsity", "measured sparsity"),
    ("metric", "metric"),
    ("learning_rate", "lr"),
    ("trainable", "trainable parameters"),
    ("percent_of_movement_pruning", "% of MvP trainable"),
    ("optimizer_state_mib", "optimizer state (MiB)"),
    ("median_step_s", "median step (s)"),
    ("peak_step_mib", "peak step memory (MiB)"),
    ("steps", "steps"),
    ("wall_time_s", "run time (s)"),
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    method: str
    sparsity: float | None  # None for the methods that do not prune

    @property
    def name(self) -> str:
        return self.method if self.sparsity is None else f"{self.method}-{round(self.sparsity * 100):g}"


def grid(methods: Sequence[str], sparsities: Sequence[float]) -> list[Cell]:
    """Every pruning method at every sparsity, and each non-pruning method once, in the order given."""
    cells = []
    for method in methods:
        if method in SPARSE_METHODS:
            cells.extend(Cell(method, s) for s in sparsities)
        else:
            cells.append(Cell(method, None))
    return cells


def cell_config(
    base: GlueConfig, cell: Cell, output_dir: Path, learning_rates: Mapping[str, float] | None = None
) -> GlueConfig:
    """The run's settings: ``base`` with the cell's method, sparsity, folder and (if given) learning rate."""
    sparsity = base.sparsity if cell.sparsity is None else cell.sparsity
    learning_rate = (learning_rates or {}).get(cell.method, base.learning_rate)
    return dataclasses.replace(
        base,
        method=cell.method,
        sparsity=sparsity,
        learning_rate=learning_rate,
        output_dir=str(output_dir / cell.name),
    )


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """What decides a run's result: every setting given, minus where it is written."""
    return {k: v for k, v in cfg.items() if k != "output_dir"}


def is_finished(cfg: GlueConfig) -> bool:
    """Whether ``cfg.output_dir`` holds the results of a finished run with these settings (a diverged one is
    run again).

    Raises:
      InputError: the folder holds results of a run with other settings.
    """
    out = Path(cfg.output_dir)
    if not (out / "results.json").is_file():
        return False
    if json.loads((out / "results.json").read_text()).get("status", "finished") != "finished":
        return False  # diverged: run it again
    saved = json.loads((out / "config.json").read_text())  # resolved: the recipe filled what was None
    wanted = json.loads(json.dumps(dataclasses.asdict(cfg)))  # tuples and lists compare alike
    changed = sorted(k for k, v in _settings(wanted).items() if v is not None and saved.get(k) != v)
    if changed:
        raise InputError(
            f"{out} holds a finished run with other settings ({', '.join(changed)}); "
            "use another --output_dir or remove that folder"
        )
    return True


def sweep(
    base: GlueConfig,
    methods: Sequence[str],
    sparsities: Sequence[float],
    output_dir: str | Path,
    hub_ok: Callable[[], bool] | None = None,
    learning_rates: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Runs (or resumes) the grid, writes the table and plots; returns the table's rows.

    ``learning_rates`` gives some methods their own peak learning rate (e.g. the papers' 3e-5 for the
    methods that train every weight); the others use ``base.learning_rate``. Every cell's settings are
    checked before the first run starts.
    """
    out = Path(output_dir)
    if not methods:
        raise InputError("--methods is empty")
    cells = grid(methods, sparsities)
    if any(c.sparsity is not None for c in cells) and not sparsities:
        raise InputError("--sparsities is empty")
    unknown = sorted(set(learning_rates or {}) - set(methods))
    if unknown:
        raise InputError(f"a learning rate is given for {unknown[0]!r}, which is not in --methods")
    configs = [cell_config(base, cell, out, learning_rates) for cell in cells]
    for cfg in configs:
        check_config(cfg, cfg.num_devices or jax.device_count())
    out.mkdir(parents=True, exist_ok=True)
    for i, (cell, cfg) in enumerate(zip(cells, configs, strict=True), 1):
        if is_finished(cfg):
            logger.warning("[%d/%d] %s: finished earlier, kept (%s)", i, len(cells), cell.name, cfg.output_dir)
            continue
        logger.warning("[%d/%d] %s: running", i, len(cells), cell.name)
        run(cfg, hub_ok)
    rows = [table_row(*(json.loads((Path(c.output_dir) / f).read_text()) for f in _RUN_FILES)) for c in configs]
    write_table(rows, out)
    plot(rows, out, get_task(base.task).selection_metric)
    return rows


_RUN_FILES = ("results.json", "config.json")


def table_row(results: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """One row of the comparison from a run's ``results.json`` (and ``config.json``, for older results)."""
    split = get_task(results["task"]).eval_splits[0]  # the one the selection metric is read on
    params, cost = results["parameters"], results["cost"]
    memory = cost["compiled_step_memory"]
    return {
        "method": results["method"],
        "target_sparsity": results["target_sparsity"],
        "measured_sparsity": results["measured_sparsity"]["mean"],
        "metric": results["best"][split][results["selection_metric"]],
        "metric_name": f"{split} {results['selection_metric']}",
        "majority_metric": results.get("majority_baseline", {}).get(results["selection_metric"]),
        "learning_rate": results.get("learning_rate", (config or {}).get("learning_rate")),
        "trainable": params["trainable"],
        "percent_of_movement_pruning": params["percent_of_movement_pruning"],
        "optimizer_state_mib": params["optimizer_state_bytes"] / 2**20,
        "median_step_s": cost["median_step_s"],
        "peak_step_mib": None if memory is None else memory["peak_bytes"] / 2**20,
        "steps": results["steps"],
        "wall_time_s": results["wall_time_s"],
    }


def _format(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if key in ("target_sparsity", "measured_sparsity"):
        return f"{100 * value:.1f}%"
    if key == "trainable":
        return f"{value:,}"
    if key == "percent_of_movement_pruning":
        return f"{value:.2f}%"
    if key == "median_step_s":
        return f"{value:.3f}"
    if key == "learning_rate":
        return f"{value:g}"
    if key in ("metric", "optimizer_state_mib", "peak_step_mib", "wall_time_s"):
        return f"{value:.1f}"
    return str(value)


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    """``comparison.csv`` (raw numbers) and ``comparison.md`` (formatted) in ``out``."""
    keys = [k for k, _ in COLUMNS]
    with open(out / "comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*keys, "metric_name", "majority_metric"])
        writer.writeheader()
        writer.writerows(rows)
    metric_name = rows[0]["metric_name"] if rows else "metric"
    headers = [metric_name if k == "metric" else title for k, title in COLUMNS]
    align = ["---" if k == "method" else "---:" for k in keys]
    lines = [headers, align, *([_format(k, row[k]) for k in keys] for row in rows)]
    (out / "comparison.md").write_text("".join("| " + " | ".join(cells) + " |\n" for cells in lines))


def plot(rows: list[dict[str, Any]], out: Path, metric: str) -> None:
    """``metric_vs_sparsity.png`` (one line per pruning method; the others, and the majority class, as horizontal
    references) and ``trainable_parameters.png`` (one bar per method, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, method in enumerate(methods):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["measured_sparsity"])
        color = f"C{i}"
        if method in SPARSE_METHODS:
            xs = [100 * r["measured_sparsity"] for r in mine]
            ax.plot(xs, [r["metric"] for r in mine], "o-", color=color, label=method)
        else:
            ax.axhline(mine[0]["metric"], color=color, linestyle="--", label=f"{method} (no pruning)")
    majority = {r.get("majority_metric") for r in rows}
    if len(majority) == 1 and None not in majority:  # every run was scored on the same dev labels
        ax.axhline(majority.pop(), color="gray", linestyle=":", label="majority class")
    ax.set_xlabel("measured sparsity of the pruned matrices (%)")
    ax.set_ylabel(rows[0]["metric_name"] if rows else metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "metric_vs_sparsity.png", dpi=120)
    plt.close(fig)

    trainable = {m: max(r["trainable"] for r in rows if r["method"] == m) for m in methods}
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar(list(trainable), list(trainable.values()), color=[f"C{i}" for i in range(len(methods))])
    ax.bar_label(bars, labels=[f"{v / 1e6:.2f}M" for v in trainable.values()], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("trainable parameters (log scale)")
    fig.tight_layout()
    fig.savefig(out / "trainable_parameters.png", dpi=120)
    plt.close(fig)
