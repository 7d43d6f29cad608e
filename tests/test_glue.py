"""experiments.glue end to end on tiny local models and fixtures: every task, errors, 1 vs 8 devices."""

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from experiments import glue as launcher
from experiments import glue_check
from pst_jax.glue.check import check_export
from pst_jax.glue.config import GlueConfig
from pst_jax.glue.loaders import load_glue_dir
from pst_jax.glue.run import fit_length_to_model, run
from pst_jax.glue.tasks import TASKS
from pst_jax.training.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "glue"
NEVER = lambda: False  # noqa: E731 -- the model hub is never asked in tests


def smoke_config(task: str, model: str, out: Path, **overrides) -> GlueConfig:
    settings = dict(
        task=task,
        model=model,
        data_dir=str(FIXTURES),
        max_steps=2,
        batch_size=8,
        eval_batch_size=8,
        max_length=32,
        learning_rate=1e-3,
        output_dir=str(out),
        num_devices=1,
    )
    return GlueConfig(**{**settings, **overrides})


@pytest.mark.parametrize("task", list(TASKS))
def test_two_step_run_on_every_task(task, tiny_model, tmp_path):
    results = run(smoke_config(task, tiny_model, tmp_path), hub_ok=NEVER)
    spec = TASKS[task]
    for name in (
        "config.json",
        "metrics.jsonl",
        "results.json",
        "sparse_model/config.json",
        "sparse_model/flax_model.msgpack",
        "sparse_model/vocab.txt",
    ):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "results.json").read_text()) == results
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["learning_rate"] == 1e-3 and config["epochs"] == (10 if task in ("mnli", "qqp") else 20)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # The fixtures fit in one batch: one step per epoch, an evaluation after each; only the last is at target.
    assert [line["step"] for line in lines] == [1, 2] and [line["at_target_sparsity"] for line in lines] == [0, 1]
    assert results["best"] == lines[-1] and results["final"] == lines[-1]
    assert results["steps"] == 2 and results["task"] == task and results["method"] == "pst"
    for split in spec.eval_splits:  # mnli: matched and mismatched
        metrics = results["best"][split]
        assert set(metrics) == set(spec.metrics)
        for name, value in metrics.items():
            low = -100.0 if name in ("matthews_correlation", "pearson", "spearman") else 0.0
            assert low <= value <= 100.0, (name, value)
    assert set(results["majority_baseline"]) == set(spec.metrics)
    assert abs(results["measured_sparsity"]["mean"] - 0.9) < 1e-3
    p = results["parameters"]
    assert 0 < p["trainable"] < p["total"] and p["trainable_fraction"] == p["trainable"] / p["total"]


def test_export_reloads_and_reproduces_the_reported_metric(tiny_model, tmp_path):
    run(smoke_config("mrpc", tiny_model, tmp_path, max_steps=4, sparsity=0.75), hub_ok=NEVER)
    report = check_export(tmp_path, hub_ok=NEVER)
    for split, metrics in report["metrics"].items():
        for name, value in metrics.items():
            assert abs(value - report["reported"][split][name]) <= 0.1, (split, name)
    assert report["kernel_sparsity"]["min"] >= 0.75 - 1e-3 and report["kernel_sparsity"]["max"] <= 0.75 + 1e-3
    assert all(abs(d) <= 1 for d in report["pruned_vs_target"].values())
    assert report["max_zero_fraction_outside_sparsified_kernels"] < 0.01  # embeddings, pooler, head unpruned

    from transformers import FlaxAutoModelForSequenceClassification

    model = FlaxAutoModelForSequenceClassification.from_pretrained(tmp_path / "sparse_model")
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: v.at[0].set(np.nan) if "classifier" in jax.tree_util.keystr(path) else v, model.params
    )
    model.save_pretrained(tmp_path / "sparse_model", params=params)
    with pytest.raises(InputError, match=r"non-finite weights \(most in classifier/"):
        check_export(tmp_path, hub_ok=NEVER)


PHASES = ["load", "tokenise", "setup", "checkpoints", "steps", "compile", "evaluation", "export", "other", "total"]


@pytest.mark.parametrize("method", ["dense", "lora", "magnitude", "movement", "soft_movement"])
def test_every_method_trains_and_exports(method, tiny_model, tmp_path):
    results = run(smoke_config("sst2", tiny_model, tmp_path, method=method, max_steps=3), hub_ok=NEVER)
    assert results["method"] == method
    measured = results["measured_sparsity"]
    if method in ("magnitude", "movement"):  # exact top-k: floor(0.9 * numel) zeros in every matrix
        assert results["target_sparsity"] == 0.9 and 0.9 - 1e-3 <= measured["min"] <= measured["max"] <= 0.9 + 1e-3
    elif method == "soft_movement":  # a threshold on the scores: whatever 3 steps of the penalty reached
        assert results["target_sparsity"] == 0.9 and 0.0 <= measured["min"] <= measured["max"] < 1.0
    else:
        assert results["target_sparsity"] == 0.0 and measured["max"] < 0.01
    p = results["parameters"]
    config = json.loads((Path(tiny_model) / "config.json").read_text())
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    if method in ("dense", "magnitude"):
        assert p["trainable"] == p["total"]
    elif method == "lora":  # rank 8 (--weight_rank) factors of q, k, v, attention output, FFN in and out
        assert p["trainable"] == p["head"] + layers * 8 * (4 * (h + h) + 2 * (h + i))
    else:  # every weight, plus one score per weight of those 6 matrices
        assert p["trainable"] == p["total"] + layers * (4 * h * h + 2 * h * i)
    # Adam's two moments for each trained parameter, plus a few step counters.
    assert 8 * p["trainable"] <= p["optimizer_state_bytes"] <= 8 * p["trainable"] + 256
    cost = results["cost"]
    assert cost["median_step_s"] > 0 and cost["compiled_step_memory"]["peak_bytes"] > 4 * p["total"]
    assert cost["host_peak_rss_bytes"] > 0
    phases = results["phases_s"]  # every phase of a run, which add up to its time
    assert list(phases) == PHASES and min(phases.values()) >= 0 and phases["compile"] > 0
    assert sum(phases.values()) - phases["total"] == pytest.approx(phases["total"], abs=0.5)


def test_eight_devices_match_one(tiny_model, tmp_path):
    """8 devices as a 4 x 2 grid (weights sharded in halves over fsdp) train like 1 device."""
    one = run(smoke_config("sst2", tiny_model, tmp_path / "one", max_steps=3), hub_ok=NEVER)
    eight_config = smoke_config(
        "sst2", tiny_model, tmp_path / "eight", max_steps=3, num_devices=8, mesh="data=4,fsdp=2"
    )
    eight = run(eight_config, hub_ok=NEVER)
    assert eight["devices"].startswith("8 x") and one["devices"].startswith("1 x")
    assert json.loads((tmp_path / "eight" / "config.json").read_text())["mesh"] == "data=4,fsdp=2"
    assert eight["best"]["validation"] == pytest.approx(one["best"]["validation"], abs=1e-6)
    np.testing.assert_allclose(eight["best"]["train_loss"], one["best"]["train_loss"], rtol=1e-5)


def bad(argv, capsys, monkeypatch):
    """Runs the launcher expecting a one-line error before any model is loaded."""
    import transformers

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(transformers.FlaxAutoModelForSequenceClassification, "from_pretrained", no_loading)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_loading)
    monkeypatch.setattr("pst_jax.glue.sources.hub_reachable", NEVER)
    assert launcher.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_unknown_task(capsys, monkeypatch):
    assert "unknown task 'sst3'" in bad(["--task", "sst3"], capsys, monkeypatch)


@pytest.mark.parametrize("value", ["1.0", "-0.1", "1.5"])
def test_sparsity_outside_range(value, capsys, monkeypatch):
    assert f"--sparsity must be in [0, 1), got {float(value)}" in bad(["--sparsity", value], capsys, monkeypatch)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("learning_rate", "nan"), ("beta", "nan"), ("learning_rate", "inf"), ("alpha1", "-inf"), ("epochs", "inf")],
)
def test_non_finite_numbers_are_refused(flag, value, capsys, monkeypatch):
    assert f"--{flag} must be a finite number, got {float(value)}" in bad([f"--{flag}={value}"], capsys, monkeypatch)


def strict_json(path: Path) -> dict:
    """``path`` parsed as strict JSON: a ``NaN`` or ``Infinity`` token fails the test."""

    def refuse(token):
        raise AssertionError(f"{path.name} holds the non-JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_diverging_run_stops_naming_the_step_and_reports_no_metric(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("pst_jax.glue.sources.hub_reachable", NEVER)
    argv = [
        "--model", tiny_model, "--data_dir", str(FIXTURES), "--max_steps", "6", "--batch_size", "8",
        "--max_length", "32", "--learning_rate", "1e30", "--num_devices", "1", "--output_dir", str(tmp_path),
    ]  # fmt: skip
    assert launcher.main(argv) == 1
    stderr = capsys.readouterr().err
    err = stderr.strip().splitlines()[-1]  # above it: the progress bar
    pattern = r"error: training diverged at step \d+: loss \S+, gradient norm \S+ \(.*\); lower --learning_rate"
    assert re.fullmatch(pattern, err) and "Traceback" not in stderr, stderr
    results = strict_json(tmp_path / "results.json")
    step = int(re.search(r"step (\d+)", err).group(1))
    assert results["status"] == "diverged" and results["diverged"]["step"] == step <= 6
    assert not {"best", "final", "metrics", "measured_sparsity"} & set(results)
    assert not (tmp_path / "sparse_model").exists()
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        assert json.loads(line)["step"] < step  # only evaluations before the divergence
    assert glue_check.main([str(tmp_path)]) == 2  # never certifies a diverged run
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path} holds no finished GLUE run (status: diverged); rerun experiments.glue into it"


def test_max_length_past_the_model_positions(tiny_model, tmp_path, caplog, monkeypatch):
    """The tiny BERT has 40 positions: an explicit --max_length 64 is refused before its weights load; the
    paper recipe's 128, left unset, is lowered to 40 with a note."""
    import transformers

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded before --max_length was checked")

    monkeypatch.setattr(transformers.FlaxAutoModelForSequenceClassification, "from_pretrained", no_weights)
    with pytest.raises(InputError, match=r"^--max_length 64 exceeds the model's 40 positions; lower it$"):
        run(smoke_config("sst2", tiny_model, tmp_path, max_length=64), hub_ok=NEVER)
    sources = SimpleNamespace(model=tiny_model, model_name="tiny")
    with caplog.at_level(logging.WARNING, logger="pst_jax"):
        fitted = fit_length_to_model(smoke_config("sst2", tiny_model, tmp_path, max_length=128), sources, False)
    assert fitted.max_length == 40
    assert "note: --max_length: the default 128 exceeds the model's 40 positions; using 40" in caplog.messages
    kept = fit_length_to_model(smoke_config("sst2", tiny_model, tmp_path, max_length=40), sources, True)
    assert kept.max_length == 40


def test_missing_data_files(tmp_path, capsys, monkeypatch):
    assert "does not exist" in bad(["--data_dir", str(tmp_path / "nowhere")], capsys, monkeypatch)
    (tmp_path / "SST-2").mkdir()
    err = bad(["--data_dir", str(tmp_path)], capsys, monkeypatch)
    assert str(tmp_path / "SST-2" / "train.tsv") in err
    err = bad(
        ["--train_file", str(tmp_path / "t.csv"), "--validation_file", str(tmp_path / "v.csv")], capsys, monkeypatch
    )
    assert "t.csv does not exist" in err


def test_data_missing_a_required_column(tmp_path, capsys, monkeypatch):
    (tmp_path / "train.csv").write_text("text,label\nfine film,1\n")
    (tmp_path / "dev.csv").write_text("sentence,label\ngood,1\n")
    err = bad(
        ["--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv")],
        capsys,
        monkeypatch,
    )
    assert "sentence" in err and "train.csv" in err


def test_model_path_that_does_not_exist(tmp_path, capsys, monkeypatch):
    err = bad(["--model", str(tmp_path / "no_model"), "--data_dir", str(FIXTURES)], capsys, monkeypatch)
    assert "no_model does not exist" in err


def test_other_task_without_hub_or_data(capsys, monkeypatch):
    assert "--data_dir" in bad(["--task", "rte"], capsys, monkeypatch)


def test_glue_from_the_datasets_cache_when_the_hub_is_unreachable(monkeypatch):
    import datasets
    import huggingface_hub

    from pst_jax.glue import sources as glue_sources

    seen = []

    def fake_load(task):
        seen.append((datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE))
        return load_glue_dir(task, str(FIXTURES))

    monkeypatch.setattr(glue_sources, "load_glue_hub", fake_load)
    sources = glue_sources.resolve_sources(GlueConfig(task="rte", model=str(FIXTURES)), TASKS["rte"], NEVER)
    assert seen == [(True, True)]  # asked the cache with the hub switched off
    assert "local datasets cache" in sources.data_name and sources.data["train"].num_rows == 5


def test_nothing_cached_falls_back_quickly():
    import time

    from pst_jax.glue.sources import load_glue_cached

    start = time.perf_counter()
    assert load_glue_cached(TASKS["rte"]) is None
    assert time.perf_counter() - start < 20


def test_flags_map_onto_the_config():
    config = launcher.parse_args(
        [
            "--task",
            "mnli",
            "--freeze_head",
            "--validation_file",
            "m.tsv",
            "mm.tsv",
            "--num_devices",
            "2",
            "--sparsity",
            "0.5",
            "--learning_rate",
            "1e-4",
        ]
    )
    assert config.task == "mnli" and config.train_head is False and config.num_devices == 2
    assert config.validation_file == ["m.tsv", "mm.tsv"] and config.sparsity == 0.5 and config.learning_rate == 1e-4
    assert config.output_dir == "runs/glue-mnli-pst" and config.epochs is None  # recipe fills it later
