"""experiments.collapse: the spread statistic by hand, and on a tiny exported model before and after collapsing it."""

import json

import numpy as np
import pytest

from experiments import collapse
from pst_jax.glue.loaders import load_glue_dir
from pst_jax.glue.run import run
from pst_jax.glue.tasks import TASKS
from tests import tiny
from tests.test_glue import FIXTURES, NEVER, smoke_config


def test_spread_statistics_by_hand():
    # Per-dimension std across the two inputs: [1, 0], mean 0.5; mean |h| = (1 + 2 + 3 + 2) / 4 = 2.
    stats = collapse.spread_statistics(np.array([[1.0, -2.0], [3.0, -2.0]]))
    assert stats == pytest.approx({"spread": 0.25, "max_abs": 3.0})
    assert collapse.spread_statistics(np.tile([0.5, -4.0, 2.0], (5, 1)))["spread"] == 0.0


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    texts = [t for split in load_glue_dir(TASKS["sst2"], str(FIXTURES)).values() for t in split["sentence"]]
    model = tiny.save_bert_folder(tmp_path_factory.mktemp("tiny_bert"), texts, num_layers=1)
    out = tmp_path_factory.mktemp("run")
    run(smoke_config("sst2", model, out, method="dense", max_steps=2), hub_ok=NEVER)
    return out


def test_a_model_whose_top_layer_is_constant_is_reported_collapsed(dense_run, capsys):
    assert collapse.main([str(dense_run), "--rows", "3"]) == 0  # the first 3 of the fixture's 4 dev rows
    report = json.loads((dense_run / "collapse.json").read_text())
    assert report["rows"] == 3 and report["split"] == "validation" and len(report["layers"]) == 2  # embeddings + 1
    assert report["layers"][0]["spread"] == 0.0  # [CLS] at position 0 embeds the same for every input
    # A random tiny model varies little, but far more than float noise (about 1e-7 of the values).
    assert report["layers"][1]["spread"] > 1e-4 and min(report["logits_std"]) > 1e-5
    assert "| 0.000 / " in capsys.readouterr().out

    # Zero the layer's output LayerNorm scale: its output is the LayerNorm bias for every token and input.
    from transformers import FlaxAutoModelForSequenceClassification

    model = FlaxAutoModelForSequenceClassification.from_pretrained(dense_run / "sparse_model")
    norm = model.params["bert"]["encoder"]["layer"]["0"]["output"]["LayerNorm"]
    norm["scale"] = np.zeros_like(norm["scale"])
    model.save_pretrained(dense_run / "sparse_model", params=model.params)
    assert collapse.main([str(dense_run)]) == 0
    report = json.loads((dense_run / "collapse.json").read_text())
    assert report["rows"] == 4 and report["layers"][1]["spread"] == 0.0
    assert report["layers"][1]["max_abs"] == pytest.approx(float(np.max(np.abs(norm["bias"]))))
    assert max(report["logits_std"]) < 1e-6


def test_bad_arguments_give_one_line_errors(tmp_path, capsys):
    assert collapse.main([str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'config.json'} not found: pass an experiments.glue --output_dir"
    )
    assert collapse.main([str(tmp_path), "--rows", "1"]) == 2
    assert "--rows must be at least 2" in capsys.readouterr().err


def test_a_run_of_another_experiment_is_refused_before_loading_anything(tmp_path, capsys):
    (tmp_path / "sparse_model").mkdir()
    (tmp_path / "sparse_model" / "config.json").write_text("{}")  # never read: the task is checked first
    (tmp_path / "config.json").write_text(json.dumps({"task": "e2e", "method": "pst"}))  # an experiments.nlg run
    assert collapse.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} is not an experiments.glue run (unknown task 'e2e'")
    assert err.count("\n") == 1
