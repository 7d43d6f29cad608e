"""The memory plan: a step compiled from shapes only, per-device bytes that shrink with fsdp."""

import jax
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
    assert launcher.main(["--model", "tiny-gpt2", "--remat"]) == 2
    assert capsys.readouterr().err == "error: --remat takes a Llama, Mistral or Gemma model; tiny-gpt2 is not one\n"
    assert benchmark.main(["--model", "tiny-llama", "--remat"]) == 2
    assert capsys.readouterr().err == "error: --remat is for the memory plan: give --mesh data=D,fsdp=F too\n"


@pytest.mark.parametrize(
    "model,dtype",
    [
        ("tiny-gpt2", "float32"),
        # slow: one more compile; the fast case checks the launcher's header with its dtype, and the slow plans
        # below compile the tiny Llama in both dtypes
        pytest.param("tiny-llama", "bfloat16", marks=pytest.mark.slow),
    ],
)
def test_the_benchmark_with_a_mesh_prints_the_plan(model, dtype, capsys):
    argv = ["--model", model, "--methods", "pst", "--mesh", "fsdp=8", "--seq_len", "32", "--batch_size", "8"]
    assert benchmark.main([*argv, "--dtype", dtype]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{model}, batch 8 x 32, {dtype}, mesh {{'data': 1, 'fsdp': 8}}, GiB per device"
    assert out[1] == "| method | arguments | temporaries | outputs | total |" and out[3].startswith("| pst |")


@pytest.mark.slow  # two compiles; the launcher test plans the tiny Llama in bfloat16 in the fast suite
def test_bfloat16_halves_the_frozen_weights_of_a_decoder(devices):
    from pst_jax.bench.models import abstract_params, model_config, unbuilt_model

    mesh = make_mesh(devices[:1])
    plans = {dtype: plan_step("tiny-llama", "pst", mesh, 8, 32, dtype=dtype) for dtype in ("float32", "bfloat16")}
    params = jax.tree.leaves(abstract_params(unbuilt_model(model_config("tiny-llama"))))
    matrices = sum(x.size for x in params if x.ndim >= 2)
    # PST keeps every weight frozen (its factors, the state and the batch are the same in both plans): storing the
    # matrices in bfloat16 saves 2 bytes each (the norms' vectors stay float32)
    saved = plans["float32"]["bytes"]["arguments"] - plans["bfloat16"]["bytes"]["arguments"]
    assert saved == 2 * matrices and matrices < sum(x.size for x in params)


@pytest.mark.slow  # two compiles; remat's values and gradients are checked in the fast suite (test_decoders.py)
def test_remat_lowers_what_a_decoder_step_keeps(devices):
    mesh = make_mesh(devices, fsdp=8)
    plain, remat = (plan_step("tiny-llama", "pst", mesh, 8, 64, remat=flag) for flag in (False, True))
    assert remat["remat"] and remat["bytes"]["arguments"] == plain["bytes"]["arguments"]
    assert remat["bytes"]["temporaries"] < plain["bytes"]["temporaries"]
