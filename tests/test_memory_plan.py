"""The memory plan: a step compiled from shapes only, per-device bytes that shrink with fsdp."""

import pytest

from experiments import benchmark
from experiments import memory_plan as launcher
from pst_jax.bench.memory_plan import plan_step
from pst_jax.training.sharding import make_mesh


@pytest.mark.slow  # four compiles; the launcher test compiles the plan in the fast suite
def test_fsdp_divides_what_each_device_holds(devices):
    replicated = plan_step("tiny-gpt2", "dense", make_mesh(devices), batch_size=8, seq_len=32)
    sharded = plan_step("tiny-gpt2", "dense", make_mesh(devices, fsdp=8), batch_size=8, seq_len=32)
    assert replicated["mesh"] == {"data": 8, "fsdp": 1} and sharded["mesh"] == {"data": 1, "fsdp": 8}
    # dense trains every weight: params and Adam's two moments are the arguments; 8-way sharding leaves about an
    # eighth of the large ones (biases and norms under 4 KiB stay whole)
    assert sharded["bytes"]["arguments"] < 0.35 * replicated["bytes"]["arguments"]
    pst = {fsdp: plan_step("tiny-gpt2", "pst", make_mesh(devices, fsdp=fsdp), 8, 32) for fsdp in (1, 8)}
    assert 0 < pst[8]["bytes"]["arguments"] < 0.6 * pst[1]["bytes"]["arguments"]  # its factors are mostly small


def test_bad_flags_are_one_line_errors(capsys):
    assert launcher.main(["--model", "gpt5"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown model 'gpt5'")
    assert launcher.main(["--mesh", "fsdp=3"]) == 2
    assert "fsdp=3 does not divide the 8 devices used" in capsys.readouterr().err
    assert launcher.main(["--seq_len", "0"]) == 2
    assert capsys.readouterr().err == "error: --seq_len must be a positive integer, got 0\n"


@pytest.mark.parametrize("method", ["pst"])
def test_the_benchmark_with_a_mesh_prints_the_plan(method, capsys):
    argv = ["--model", "tiny-gpt2", "--methods", method, "--mesh", "fsdp=8", "--seq_len", "32", "--batch_size", "8"]
    assert benchmark.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "| method | arguments | temporaries | outputs | total |" and out[3].startswith(f"| {method} |")
