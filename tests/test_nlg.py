"""experiments.nlg end to end: a tiny GPT-2 with the real GPT-2 tokenizer on real E2E, DART and WebNLG rows."""

import json
import math
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pytest
from transformers import FlaxGPT2LMHeadModel

from experiments import nlg as launcher
from pst_jax.core.rules import GPT2_RULES, flatten, make_plan, read_matrix
from pst_jax.nlg.beam_search import decode_rows, make_generate
from pst_jax.nlg.config import NLGConfig, resolve_defaults
from pst_jax.nlg.data import load_nlg_dir
from pst_jax.nlg.metrics import lora_postprocess
from pst_jax.nlg.rows import prompt_batches
from pst_jax.nlg.run import run
from pst_jax.training.errors import InputError
from tests import tiny

FIXTURES = Path(__file__).parent / "fixtures"
NEVER = lambda: False  # noqa: E731  the hub is unreachable in tests


def _target_nll(folder: str, examples) -> float:
    """Mean next-token NLL over the reference tokens and final eos of every (source, reference) pair."""
    from transformers import AutoTokenizer

    model = FlaxGPT2LMHeadModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    eos = tokenizer.eos_token_id
    forward = jax.jit(lambda ids: jax.nn.log_softmax(model(ids).logits[0]))
    total, count = 0.0, 0
    for example in examples:
        prompt = tokenizer(example.source)["input_ids"] + [eos]
        for reference in example.references:
            target = tokenizer(" " + reference)["input_ids"] + [eos]
            ids = np.zeros((1, 128), np.int32)  # right padding cannot change earlier positions
            ids[0, : len(prompt) + len(target)] = prompt + target
            logp = np.asarray(forward(ids))
            positions = np.arange(len(prompt) - 1, len(prompt) + len(target) - 1)  # logits that predict the target
            total -= logp[positions, target].sum()
            count += len(target)
    return total / count


def smoke_config(task: str, model: str, out: Path, **overrides) -> NLGConfig:
    settings = dict(
        task=task,
        model=model,
        data_dir=str(FIXTURES / "nlg" / task),
        max_steps=2,
        warmup_steps=0,
        batch_size=8,
        eval_batch_size=8,
        max_length=128,
        max_new_tokens=12,
        num_beams=4,
        generate_batch_size=4,
        max_generate_samples=6,
        metrics=("BLEU", "TER", "ROUGE_L", "NIST", "CIDEr"),  # METEOR (a JVM start) is tested in test_nlg_metrics
        num_devices=1,
        output_dir=str(out),
    )
    return NLGConfig(**{**settings, **overrides})


@pytest.mark.parametrize(
    ("task", "devices"),
    [
        # slow: each task's rows are checked in test_nlg_data and the defaults fitted to a short run in the test
        # below; the fast suite runs the whole experiment on WebNLG, its batches and prompts split over 4 devices
        pytest.param("e2e", 1, marks=pytest.mark.slow),
        pytest.param("dart", 2, marks=pytest.mark.slow),
        ("webnlg", 4),
    ],
)
def test_smoke_run_generates_scores_and_exports_the_target_sparsity(task, devices, gpt2_folder, tmp_path):
    """A 2-step run per task, on 1, 2 and 4 devices (batches and beam-search prompts split across them)."""
    unset = {"warmup_steps": None, "max_length": None} if task == "dart" else {}  # the defaults, fitted to the run
    cfg = smoke_config(task, gpt2_folder, tmp_path, num_devices=devices, **unset)
    results = run(cfg, hub_ok=NEVER)
    used = json.loads((tmp_path / "config.json").read_text())
    assert (used["warmup_steps"], used["max_length"]) == ((0, 256) if unset else (0, 128))
    for name in ("config.json", "metrics.jsonl", "results.json", "predictions.jsonl", "predictions.txt"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["steps"] == 2 and results["target_sparsity"] == 0.9
    phases = results["phases_s"]
    assert {"load", "tokenise", "compile", "steps", "evaluation", "export", "generation", "metrics"} <= set(phases)
    assert sum(phases.values()) - phases["total"] == pytest.approx(phases["total"], abs=0.6)
    assert results["generation"]["wall_time_s"] == phases["generation"] > 0

    # the validation loss before training and after every epoch (DART's 8 training rows are one batch, so
    # its 2 steps are 2 epochs)
    data = load_nlg_dir(task, FIXTURES / "nlg" / task)
    steps_per_epoch = math.ceil(sum(len(e.references) for e in data["train"]) / 8)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == ([1, 2] if steps_per_epoch == 1 else [2])
    assert results["final"] == records[-1] and results["epochs"] == len(records)
    assert np.isfinite([r["validation_loss"] for r in records]).all()
    # before training PST's model is the pretrained one: its loss, per target token, computed row by row here
    assert results["initial_validation_loss"] == pytest.approx(_target_nll(gpt2_folder, data["validation"]), rel=1e-5)

    # predictions: one per generated input, in order, with that input's references
    examples = data["test"][:6]
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [(r["source"], r["references"]) for r in rows] == [(e.source, list(e.references)) for e in examples]
    assert (tmp_path / "predictions.txt").read_text().splitlines() == [r["prediction"] for r in rows]
    scores = results["metrics"]
    assert set(scores["computed_by"]) == {"BLEU", "TER", "ROUGE_L", "NIST", "CIDEr"} - set(scores["not_computed"])
    assert {"BLEU", "TER", "ROUGE_L", "CIDEr"} <= set(scores["computed_by"]) and scores["segments"] == 6
    assert 0.0 <= scores["BLEU"] <= 100.0 and scores["TER"] >= 0.0

    # the exported model: every planned matrix (q, k and v of the fused c_attn each on its own) has exactly
    # floor(0.9 * n) zeros, and nothing else is zero
    model = FlaxGPT2LMHeadModel.from_pretrained(tmp_path / "sparse_model")
    flat = flatten(model.params)
    plan = make_plan(model.params, GPT2_RULES)
    assert {m.name.rsplit(":", 1)[-1] for m in plan.matrices if ":" in m.name} == {"q", "k", "v"}
    for m in plan.matrices:
        zeros = int(np.sum(np.asarray(read_matrix(flat[m.path], m)) == 0))
        assert zeros == math.floor(0.9 * m.numel), m.name
    sparse = {m.path for m in plan.matrices}
    assert all(np.all(np.asarray(v) != 0) for p, v in flat.items() if p not in sparse and not p.endswith("bias"))

    # the texts are what the exported checkpoint generates: reload it and decode again, on one device
    generate = make_generate(
        model, num_beams=4, max_new_tokens=12, length_penalty=0.8, no_repeat_ngram_size=4, eos_token_id=50256
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "sparse_model")
    again = []
    for batch, real in prompt_batches(tokenizer, [e.source for e in examples], 4, 116, (16, 32, 64, 116)):
        tokens = np.asarray(generate(model.params, batch["input_ids"], batch["attention_mask"]))[:real]
        again.extend(lora_postprocess(t) for t in decode_rows(tokenizer, tokens, 50256))
    assert again == [r["prediction"] for r in rows]


def test_unset_defaults_fit_a_short_run_and_a_small_model_explicit_values_do_not():
    cfg = NLGConfig(max_steps=5)  # --warmup_steps and --max_length unset: the paper's 500 and 512
    resolved, notes = resolve_defaults(cfg, total_steps=5, n_positions=256)
    assert (resolved.warmup_steps, resolved.max_length) == (0, 256)
    assert notes == [
        "--warmup_steps: the default 500 is not below the run's 5 steps; using 0",
        "--max_length: the default 512 exceeds the model's 256 positions; using 256",
    ]
    assert resolve_defaults(cfg, total_steps=5000, n_positions=1024) == (
        replace(cfg, warmup_steps=500, max_length=512),
        [],
    )
    with pytest.raises(InputError, match="--warmup_steps 500 is not below the run's 5 steps"):
        resolve_defaults(replace(cfg, warmup_steps=500), total_steps=5, n_positions=256)
    with pytest.raises(InputError, match="--max_length 512 exceeds the model's 256 positions"):
        resolve_defaults(replace(cfg, max_length=512), total_steps=5, n_positions=256)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "cnn"}, "unknown task 'cnn'"),
        ({"sparsity": 1.0}, r"--sparsity must be in \[0, 1\)"),
        ({"method": "l0"}, "unknown method 'l0'"),
        ({"max_new_tokens": 128}, "leaves no room for the prompt"),
        ({"metrics": ("BLEU", "SPICE")}, r"unknown metrics \['SPICE'\]"),
        ({"warmup_steps": 500}, "--warmup_steps 500 is not below the run's 2 steps"),
        ({"data_dir": None}, "the hub is unreachable, so e2e cannot be downloaded"),
        ({"data_dir": None, "train_file": "nowhere.txt", "validation_file": "x.txt"}, "nowhere.txt does not exist"),
        ({"model": "./no/such/model"}, "does not exist"),
        ({"model": "gpt2-medium"}, "not a local folder, not cached, and the hub is unreachable"),
        ({"generate_batch_size": 3, "num_devices": 2}, "not divisible by the 2 devices"),
        ({"max_length": 1024, "model": "TINY"}, "exceeds the model's 256 positions"),
        ({"learning_rate": float("nan")}, "--learning_rate must be a finite number, got nan"),
        ({"beta": float("nan")}, "--beta must be a finite number, got nan"),
        ({"label_smoothing": float("inf")}, "--label_smoothing must be a finite number, got inf"),
    ],
)
def test_bad_input_is_one_line_before_any_model_loads(overrides, message, gpt2_folder, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(FlaxGPT2LMHeadModel, "from_pretrained", no_model)
    with pytest.raises(ValueError, match=message) as error:
        # A real model folder: a folder without config.json (the bare tokenizer fixture) is itself refused.
        settings = {"task": "e2e", "model": gpt2_folder, **overrides}
        settings["model"] = gpt2_folder if settings["model"] == "TINY" else settings["model"]
        run(smoke_config(settings.pop("task"), settings.pop("model"), tmp_path / "out", **settings), hub_ok=NEVER)
    assert "\n" not in str(error.value)


def test_malformed_row_and_non_gpt2_model_are_one_line_errors(tmp_path):
    bad = tmp_path / "valid.txt"
    bad.write_text("name : A||fine\nname : B without separator\n")
    cfg = smoke_config("e2e", "unused", tmp_path / "out", data_dir=None, train_file=str(bad), validation_file=str(bad))
    with pytest.raises(ValueError, match="line 2"):
        run(cfg, hub_ok=NEVER)
    bert = tiny.save_bert_folder(tmp_path / "bert", ["a b c"], num_layers=1)
    with pytest.raises(ValueError, match="is a 'bert' model; the NLG tasks here take GPT-2"):
        run(smoke_config("e2e", bert, tmp_path / "out2"), hub_ok=NEVER)


def test_launcher_parses_the_paper_recipe_and_reports_errors(capsys, tmp_path):
    cfg = launcher.parse_args(["--task", "dart"])
    assert (cfg.model, cfg.learning_rate, cfg.epochs) == ("gpt2-medium", 1e-4, 5)
    assert (cfg.warmup_steps, cfg.max_length) == (None, None)  # unset: fitted to the run and the model
    paper, _ = resolve_defaults(cfg, total_steps=10_000, n_positions=1024)
    assert (paper.warmup_steps, paper.max_length) == (500, 512)
    assert (cfg.label_smoothing, cfg.weight_decay, cfg.num_beams, cfg.length_penalty) == (0.1, 0.0, 10, 0.8)
    assert cfg.no_repeat_ngram_size == 4 and cfg.output_dir == "runs/nlg-dart-pst"
    assert launcher.parse_args(["--metrics", "BLEU,TER"]).metrics == ("BLEU", "TER")
    assert launcher.main(["--task", "e2e", "--sparsity", "1.5", "--output_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: --sparsity must be in [0, 1), got 1.5"
