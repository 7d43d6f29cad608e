"""experiments.benchmark on a tiny BERT: the figures it reports are the ones of the state it built."""

import json

import jax
import pytest

from experiments import benchmark
from pst_jax import make_plan, rules_for, trainable_parameters
from pst_jax.bench import step_cost
from pst_jax.core.pst import num_factor_params


def test_benchmark_reports_each_method(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--model", "tiny-bert", "--batch_size", "4", "--seq_len", "16", "--steps", "2", "--warmup", "1"]
    argv += ["--num_devices", "1", "--methods", "pst,lora", "--no_isolate", "--output", str(out)]
    assert benchmark.main(argv) == 0
    report = json.loads(out.read_text())
    results = {r["method"]: r for r in report["results"]}
    assert list(results) == ["pst", "lora"] and report["device"].endswith("(cpu)")

    model, _, _ = benchmark.build("tiny-bert", 4, 16)
    plan = make_plan(model.params, rules_for("bert"))
    head = 32 * 2 + 2  # the 2-way classifier on the 32-wide pooled output
    factors = sum(num_factor_params(m.d_in, m.d_out) for m in plan.matrices)
    assert results["pst"]["trainable_parameters"] == head + factors
    for name, r in results.items():
        assert r["trainable_parameters"] == trainable_parameters(name, model.params, plan)
        # Adam's two float32 moments per trained parameter, plus the step counters.
        assert 8 * r["trainable_parameters"] <= r["optimizer_state_bytes"] <= 8 * r["trainable_parameters"] + 256
        assert r["median_step_s"] > 0 and r["compile_s"] > 0 and r["compiled_step_memory"]["peak_bytes"] > 0
    assert 0 < results["pst"]["mask_share"] and 0 < results["pst"]["median_mask_s"]
    assert results["lora"]["mask_share"] is None and results["lora"]["median_mask_s"] is None
    table = capsys.readouterr().out
    assert "| pst | " in table and "| lora | " in table


def test_benchmark_rejects_bad_flags(capsys, monkeypatch):
    assert benchmark.main(["--methods", "pst,sorting"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown method 'sorting'; choose from pst, ")
    assert benchmark.main(["--model", "bert-huge"]) == 2
    assert "unknown model 'bert-huge'" in capsys.readouterr().err
    monkeypatch.setattr(step_cost, "host_memory_bytes", lambda: 24 * 2**30)  # 8.03e9 float32 weights: 29.9 GiB
    assert benchmark.main(["--model", "llama-3-8b", "--batch_size", "8"]) == 2
    assert capsys.readouterr().err == (
        "error: llama-3-8b's float32 weights (30 GiB) exceed this host's memory (24 GiB); "
        "plan it from shapes with --mesh data=D,fsdp=F\n"
    )
    assert benchmark.main(["--batch_size", "4"]) == 2  # the tests' 8 fake devices
    assert "--batch_size 4 must split evenly over --num_devices 8" in capsys.readouterr().err


@pytest.mark.slow  # two more compiled steps and XLA's liveness dump
def test_breakdown_says_what_is_live_at_the_peak(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--model", "tiny-bert", "--batch_size", "4", "--seq_len", "16", "--steps", "1", "--warmup", "0"]
    argv += ["--num_devices", "1", "--methods", "pst,dense", "--no_isolate", "--breakdown", "--output", str(out)]
    assert benchmark.main(argv) == 0
    results = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    model, _, _ = benchmark.build("tiny-bert", 4, 16)
    head_bytes = (32 * 2 + 2) * 4
    all_bytes = sum(x.nbytes for x in jax.tree.leaves(model.params))
    for r in results.values():
        b = r["peak_breakdown_bytes"]
        assert b["total"] == sum(v for k, v in b.items() if k != "total")
        # Values sharing a buffer count once each (see pst_jax.training.peak_memory): near the peak, not equal.
        assert 0.5 < b["total"] / r["compiled_step_memory"]["peak_bytes"] < 2
        assert b["model activations"] > 0
    pst, dense = results["pst"]["peak_breakdown_bytes"], results["dense"]["peak_breakdown_bytes"]
    # PST's frozen weights are every pretrained weight but the trained head, all live through the step.
    assert pst["frozen weights"] == all_bytes - head_bytes and dense["frozen weights"] == 0
    # PST forms its masked kernels outside the model; dense fine-tuning feeds its weights in as they are
    # (outside the model it has only the loss's few scalars).
    outside = "outside the model: method, loss"
    assert dense[outside] < 1024 and pst[outside] > 100 * max(dense[outside], 1)
    assert "| pst | " in capsys.readouterr().out.split("liveness dump:")[1]
