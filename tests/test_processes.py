"""Two processes x two fake CPU devices on localhost, one run: the same results as one process with four
devices on the same mesh, and only process 0 writes the run folder's files.

Slow (each process compiles for itself on this machine's two cores): marked ``slow``, run by the README's
second test command.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax.serialization import msgpack_restore

from experiments import glue as glue_launcher
from experiments import nlg as nlg_launcher
from tests.test_resume import FIXTURES, ROOT, without_timing

pytestmark = pytest.mark.slow
MESH = ("--mesh", "data=2,fsdp=2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(experiment: str, flags: list[str], tmp_path: Path) -> list[subprocess.CompletedProcess]:
    """The launcher as processes 0 and 1 of one run (2 CPU devices each); process 1 records its writes."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    port, procs = free_port(), []
    for i in (0, 1):
        wrapper = ["-m", "tests.record_writes", str(tmp_path / f"writes{i}.txt"), experiment]
        dist = ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2", "--process_id", str(i)]
        command = [sys.executable, *wrapper, *flags, *dist]
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


def test_glue_on_two_processes_matches_one(tiny_model, tmp_path):
    flags = [
        "--task", "sst2", "--model", tiny_model, "--data_dir", str(FIXTURES / "glue"), "--epochs", "2",
        "--batch_size", "4", "--eval_batch_size", "8", "--max_length", "32", "--learning_rate", "1e-3", *MESH,
    ]  # fmt: skip
    procs = run_two_processes("glue", [*flags, "--output_dir", str(tmp_path / "two")], tmp_path)
    assert glue_launcher.main([*flags, "--num_devices", "4", "--output_dir", str(tmp_path / "one")]) == 0
    a, b = check_two_match_one(tmp_path / "two", tmp_path / "one", procs, tmp_path, rtol=1e-5)
    assert a["best"] == b["best"] and a["final"] == b["final"]


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
