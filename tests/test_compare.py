"""experiments.compare end to end on the embedded default (MiniLM, Rotten Tomatoes), a few steps per run."""

import csv
import json

import pytest

from experiments import compare
from pst_jax.glue import sweep

ARGV = [
    "--task", "sst2", "--methods", "pst,dense", "--sparsities", "0.9",
    "--max_steps", "2", "--batch_size", "8", "--max_length", "32", "--max_eval_samples", "48", "--num_devices", "1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setattr("pst_jax.glue.sources.hub_reachable", lambda: False)


@pytest.mark.slow  # the embedded MiniLM, end to end: the README's first command, a few steps per cell
def test_sweep_writes_table_and_plots_then_resumes(tmp_path, monkeypatch, capsys):
    assert compare.main([*ARGV, "--output_dir", str(tmp_path)]) == 0
    runs = {name: json.loads((tmp_path / name / "results.json").read_text()) for name in ("pst-90", "dense")}
    assert all(r["embedded_default"] and r["steps"] == 2 for r in runs.values())
    assert runs["pst-90"]["measured_sparsity"]["mean"] == pytest.approx(0.9, abs=1e-4)
    assert runs["dense"]["measured_sparsity"]["max"] < 0.01

    with open(tmp_path / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["target_sparsity"]) for r in rows] == [("pst", "0.9"), ("dense", "0.0")]
    for row, results in zip(rows, runs.values(), strict=True):
        assert float(row["metric"]) == results["best"]["validation"]["accuracy"]
        assert int(row["trainable"]) == results["parameters"]["trainable"]
        assert float(row["majority_metric"]) == results["majority_baseline"]["accuracy"]
        assert float(row["median_step_s"]) == results["cost"]["median_step_s"] > 0
        assert float(row["peak_step_mib"]) * 2**20 == pytest.approx(
            results["cost"]["compiled_step_memory"]["peak_bytes"]
        )
    # PST trains a few percent of what movement pruning trains; dense fine-tuning trains every weight.
    assert float(rows[0]["percent_of_movement_pruning"]) < 5 < float(rows[1]["percent_of_movement_pruning"])
    table = (tmp_path / "comparison.md").read_text().splitlines()
    assert len(table) == 2 + 2 and table[0].startswith("| method | target sparsity | measured sparsity | validation")
    assert table[2].startswith("| pst | 90.0% | 90.0% |") and table[3].startswith("| dense | 0.0% | 0.0% |")
    for png in ("metric_vs_sparsity.png", "trainable_parameters.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Rerun: every cell is finished, nothing runs again, the table is rewritten from the same results.
    monkeypatch.setattr(sweep, "run", lambda *a, **k: pytest.fail("a finished run was rerun"))
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/results.json")}
    assert compare.main([*ARGV, "--output_dir", str(tmp_path)]) == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/results.json")} == before
    assert (tmp_path / "comparison.md").read_text().splitlines() == table

    # Other settings in the same folder: a one-line error, nothing overwritten.
    capsys.readouterr()
    assert compare.main([*ARGV, "--output_dir", str(tmp_path), "--learning_rate", "1e-3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "other settings (learning_rate)" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--methods", "pst,obs"], "unknown method 'obs'"),
        (["--sparsities", "0.5,1.0"], "--sparsity must be in [0, 1), got 1.0"),
        (["--methods", "soft_movement", "--sparsities", "0"], "soft_movement needs --sparsity > 0"),
        (["--methods", "pst", "--learning_rates", "dense=3e-5"], "learning rate is given for 'dense'"),
    ],
)
def test_bad_grid_fails_before_any_run(flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "run", lambda *a, **k: pytest.fail("ran before checking the whole grid"))
    assert compare.main(["--output_dir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_grid_runs_methods_that_do_not_prune_once():
    cells = sweep.grid(["pst", "dense", "movement", "lora"], [0.5, 0.9])
    assert [c.name for c in cells] == ["pst-50", "pst-90", "dense", "movement-50", "movement-90", "lora"]
    assert sweep.grid(["magnitude"], [0.75])[0].name == "magnitude-75"


def test_per_method_learning_rates_reach_their_cells(tmp_path):
    base = sweep.GlueConfig(learning_rate=2e-4)
    cells = sweep.grid(["pst", "dense"], [0.9])
    configs = [sweep.cell_config(base, c, tmp_path, {"dense": 3e-5}) for c in cells]
    assert [(c.method, c.learning_rate, c.sparsity) for c in configs] == [("pst", 2e-4, 0.9), ("dense", 3e-5, 0.9)]
    assert configs[1].output_dir == str(tmp_path / "dense")
