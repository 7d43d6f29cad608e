"""Two processes x two fake CPU devices on localhost, one run: the same results as one process with four
devices on the same mesh, and only process 0 writes the run folder's files.

Slow (each process compiles for itself on this machine's two cores): marked ``slow``, run by the README's
second test command.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax.serialization import msgpack_restore

from experiments import glue as glue_launcher
from experiments import nlg as nlg_launcher
from tests.test_resume import FIXTURES, ROOT, latest_checkpoint, outputs, without_timing

pytestmark = pytest.mark.slow
MESH = ("--mesh", "data=2,fsdp=2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(
    experiment: str, flags: list[str], tmp_path: Path, wrap: dict[int, list[str]] | None = None
) -> list[subprocess.CompletedProcess]:
    """The launcher as processes 0 and 1 of one run (2 CPU devices each). Each runs under ``wrap[i]`` (a
    ``tests`` module and its arguments), by default ``tests.record_writes`` recording its writes."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    port, procs = free_port(), []
    for i in (0, 1):
        wrapper = (wrap or {}).get(i, ["tests.record_writes", str(tmp_path / f"writes{i}.txt")])
        dist = ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2", "--process_id", str(i)]
        command = [sys.executable, "-m", *wrapper, experiment, *flags, *dist]
        procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=400)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode()))
    return done


def weights(out: Path) -> dict:
    flat = {}

    def walk(tree, prefix=""):
        for k, v in tree.items():
            walk(v, f"{prefix}/{k}") if isinstance(v, dict) else flat.__setitem__(f"{prefix}/{k}", np.asarray(v))

    walk(msgpack_restore((out / "sparse_model" / "flax_model.msgpack").read_bytes()))
    return flat


def check_two_match_one(two: Path, one: Path, procs: list, tmp_path: Path, rtol: float) -> tuple[dict, dict]:
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    gloo = ("[Gloo]", "peer ranks")  # gloo's connection notes, from C++ (lines may interleave)
    printed = [[line for line in p.stdout.splitlines() if not any(g in line for g in gloo)] for p in procs]
    assert printed[0][-1] == f"outputs in {two}" and printed[1] == []  # the summary: process 0 only
    assert (tmp_path / "writes1.txt").read_text() == ""  # process 1 wrote nothing but its checkpoint shards
    assert "results.json" in (tmp_path / "writes0.txt").read_text()
    a, b = (json.loads((d / "results.json").read_text()) for d in (two, one))
    assert a["mesh"] == b["mesh"] == {"data": 2, "fsdp": 2} and a["devices"] == b["devices"]
    wa, wb = weights(two), weights(one)
    assert wa.keys() == wb.keys()
    for path in wa:
        np.testing.assert_allclose(wa[path], wb[path], rtol=1e-5, atol=1e-5, err_msg=path)
    return without_timing(a), without_timing(b)


def glue_flags(model: str) -> list[str]:
    return [
        "--task", "sst2", "--model", model, "--data_dir", str(FIXTURES / "glue"), "--epochs", "2",
        "--batch_size", "4", "--eval_batch_size", "8", "--max_length", "32", "--learning_rate", "1e-3",
        "--checkpoint_every_steps", "1", *MESH,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def glue_two(tiny_model, tmp_path_factory) -> tuple[Path, list]:
    """An uninterrupted GLUE run as 2 processes x 2 devices: its folder and processes."""
    tmp = tmp_path_factory.mktemp("glue_two")
    return tmp, run_two_processes("glue", [*glue_flags(tiny_model), "--output_dir", str(tmp / "two")], tmp)


def test_glue_on_two_processes_matches_one(glue_two, tiny_model, tmp_path):
    tmp, procs = glue_two
    flags = [*glue_flags(tiny_model), "--num_devices", "4", "--output_dir", str(tmp_path / "one")]
    assert glue_launcher.main(flags) == 0
    a, b = check_two_match_one(tmp / "two", tmp_path / "one", procs, tmp, rtol=1e-5)
    assert a["best"] == b["best"] and a["final"] == b["final"]


def test_sigterm_on_one_process_stops_both_at_one_step_and_the_rerun_is_bit_identical(glue_two, tiny_model, tmp_path):
    flags = [*glue_flags(tiny_model), "--output_dir", str(tmp_path)]
    stopped = run_two_processes("glue", flags, tmp_path, wrap={1: ["tests.kill_at_step", "2", "SIGTERM"]})
    lines = []
    for proc in stopped:
        assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
        lines.append([line for line in proc.stderr.splitlines() if line.startswith("error:")])
    assert lines[0] == lines[1] and len(lines[0]) == 1, lines  # both stopped after the same step
    step = int(re.match(r"error: stopped by SIGTERM after step (\d+);", lines[0][0]).group(1))
    assert latest_checkpoint(tmp_path) == step and not (tmp_path / "results.json").exists()
    finished = run_two_processes("glue", flags, tmp_path)
    assert [p.returncode for p in finished] == [0, 0], finished[1].stderr[-3000:]
    assert outputs(tmp_path) == outputs(glue_two[0] / "two")


def test_nlg_on_two_processes_matches_one(gpt2_folder, tmp_path):
    flags = [
        "--task", "e2e", "--model", gpt2_folder, "--data_dir", str(FIXTURES / "nlg" / "e2e"), "--max_steps", "3",
        "--warmup_steps", "0", "--batch_size", "8", "--eval_batch_size", "8", "--max_length", "128",
        "--max_new_tokens", "4", "--num_beams", "2", "--generate_batch_size", "4", "--max_generate_samples", "4",
        "--metrics", "BLEU", *MESH,
    ]  # fmt: skip
    procs = run_two_processes("nlg", [*flags, "--output_dir", str(tmp_path / "two")], tmp_path)
    assert nlg_launcher.main([*flags, "--num_devices", "4", "--output_dir", str(tmp_path / "one")]) == 0
    a, b = check_two_match_one(tmp_path / "two", tmp_path / "one", procs, tmp_path, rtol=1e-5)
    for key in ("validation_loss", "train_loss"):
        assert a["final"][key] == pytest.approx(b["final"][key], rel=1e-5)
    assert a["initial_validation_loss"] == pytest.approx(b["initial_validation_loss"], rel=1e-5)
    assert (tmp_path / "two" / "predictions.txt").read_text() == (tmp_path / "one" / "predictions.txt").read_text()
