"""The run folder: resume after SIGKILL, SIGTERM and SIGINT is bit-identical; locks, settings, atomic export.

Each experiment trains once uninterrupted in-process, and once killed and resumed: a SIGKILL (a subprocess,
at a random step after the first checkpoint), then for GLUE a SIGTERM and a SIGINT at later steps (in-process:
the signal handlers are the launcher's own), then a rerun of the same command that finishes.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from experiments import glue as glue_launcher
from experiments import glue_check
from experiments import nlg as nlg_launcher
from pst_jax.training.errors import InputError
from pst_jax.training.loop import TrainLoop
from pst_jax.training.run_folder import RunFolder
from tests.kill_at_step import committed, finish_then_signal

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
TIMING = ("elapsed_s", "wall_time_s", "cost", "checkpoint_bytes", "phases_s")


def glue_flags(model: str, out: Path, *extra: str) -> list[str]:
    """sst2's 5 fixture rows in batches of 2: 3 steps an epoch, 4 epochs, a checkpoint every 2 steps."""
    return [
        "--task", "sst2", "--model", model, "--data_dir", str(FIXTURES / "glue"), "--epochs", "4",
        "--batch_size", "2", "--eval_batch_size", "8", "--max_length", "32", "--learning_rate", "1e-3",
        "--num_devices", "1", "--checkpoint_every_steps", "2", "--output_dir", str(out), *extra,
    ]  # fmt: skip


def nlg_flags(model: str, out: Path, *extra: str) -> list[str]:
    """E2E's fixture rows in batches of 8 for 2 epochs, a checkpoint every 2 steps, a short beam search."""
    return [
        "--task", "e2e", "--model", model, "--data_dir", str(FIXTURES / "nlg" / "e2e"), "--epochs", "2",
        "--warmup_steps", "0", "--batch_size", "8", "--eval_batch_size", "8", "--max_length", "128",
        "--max_new_tokens", "4", "--num_beams", "2", "--generate_batch_size", "2", "--max_generate_samples", "2",
        "--metrics", "BLEU", "--num_devices", "1", "--checkpoint_every_steps", "2", "--output_dir", str(out), *extra,
    ]  # fmt: skip


def kill_in_subprocess(step: int, experiment: str, flags: list[str]) -> subprocess.CompletedProcess:
    """Runs the launcher in a new process (this session's devices, compilation cache and precision) and
    SIGKILLs it after ``step``."""
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
        "JAX_DEFAULT_MATMUL_PRECISION": "highest",
    }
    command = [sys.executable, "-m", "tests.kill_at_step", str(step), "SIGKILL", experiment, *flags]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def without_timing(obj):
    """``obj`` without the wall-clock fields, which differ between any two runs."""
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


def outputs(out: Path) -> tuple:
    """What must be bit-identical: results, every evaluation record, and the exported weights' bytes."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    results = json.loads((out / "results.json").read_text())
    weights = (out / "sparse_model" / "flax_model.msgpack").read_bytes()
    return without_timing(results), without_timing(records), weights


def latest_checkpoint(out: Path) -> int:
    return max(committed(out / "checkpoints"), default=0)


def one_error_line(err: str) -> str:
    """The one ``error:`` line of ``err`` (the last; before it only progress bars and notes, no traceback)."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.strip().endswith(errors[0]) and "Traceback" not in err, err[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def glue_reference(tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("glue_uninterrupted")
    assert glue_launcher.main(glue_flags(tiny_model, out)) == 0
    return out


def test_glue_resumes_bit_identically_after_sigkill_sigterm_and_sigint(
    glue_reference, tiny_model, tmp_path, capsys, caplog, monkeypatch
):
    flags = glue_flags(tiny_model, tmp_path)
    kill = random.randint(3, 6)  # after the first checkpoint (step 2); 12 steps in all
    steps = f"SIGKILL at {kill}"

    killed = kill_in_subprocess(kill, "glue", flags)
    assert killed.returncode == -signal.SIGKILL, (steps, killed.stderr[-2000:])
    assert not (tmp_path / "results.json").exists() and latest_checkpoint(tmp_path) >= 2, steps
    assert glue_check.main([str(tmp_path)]) == 2  # a killed run is not certified
    assert "no finished GLUE run" in one_error_line(capsys.readouterr().err)

    stopped = latest_checkpoint(tmp_path)
    for sig, last in ((signal.SIGTERM, 8), (signal.SIGINT, 11)):  # each after the run resumes, before its end
        step = random.randint(stopped + 1, last)
        steps += f", {sig.name} at {step}"
        with monkeypatch.context() as patch:
            patch.setattr(TrainLoop, "_finish", finish_then_signal(step, sig))
            assert glue_launcher.main(flags) == 128 + sig, steps
        line = one_error_line(capsys.readouterr().err)
        # the signal arrives while the next step is in flight (steps are pipelined): that one finishes first
        stopped = int(re.match(rf"error: stopped by {sig.name} after step (\d+);", line).group(1))
        assert stopped in (step, step + 1), (steps, line)
        assert line.endswith(f"; checkpoint saved in {tmp_path / 'checkpoints'}; rerun the same command to resume")
        assert latest_checkpoint(tmp_path) == stopped, steps

    assert glue_launcher.main(flags) == 0, steps
    assert outputs(tmp_path) == outputs(glue_reference), steps
    assert f"resuming from the checkpoint of step {stopped} in {tmp_path / 'checkpoints'}" in caplog.text


def test_a_finished_run_is_not_redone_and_other_settings_are_refused(
    glue_reference, tiny_model, capsys, caplog, monkeypatch
):
    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr("transformers.FlaxAutoModelForSequenceClassification.from_pretrained", no_weights)
    before = outputs(glue_reference)
    assert glue_launcher.main(glue_flags(tiny_model, glue_reference)) == 0
    assert "holds this run, finished; nothing to redo" in caplog.text
    assert outputs(glue_reference) == before

    assert glue_launcher.main(glue_flags(tiny_model, glue_reference, "--learning_rate", "2e-3")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "holds a run with learning_rate 0.001, not 0.002" in line and "--overwrite" in line


def test_a_folder_in_use_is_refused(tiny_model, tmp_path, capsys):
    with RunFolder.open(tmp_path, {"anything": 1}, overwrite=False):
        assert glue_launcher.main(glue_flags(tiny_model, tmp_path)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == (
        f"error: --output_dir {tmp_path} is in use by another run (pid {os.getpid()}); "
        "wait for it or choose another --output_dir"
    )


def test_every_refusal_by_process_0_reaches_the_others(tmp_path, monkeypatch):
    """The other processes wait on process 0's decision: an OS error while it opens the folder is sent as one."""
    from pst_jax.training import run_folder

    said = []
    monkeypatch.setattr(run_folder, "_agree", said.append)

    def unreadable(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(run_folder, "_lock", unreadable)
    with pytest.raises(PermissionError), RunFolder.open(tmp_path / "a", {}, overwrite=False):
        pass
    monkeypatch.setattr(Path, "mkdir", lambda *args, **kwargs: unreadable(None))
    with pytest.raises(InputError, match="cannot create --output_dir .*: Permission denied; choose another"):
        with RunFolder.open(tmp_path / "b", {}, overwrite=False):
            pass
    assert said == [run_folder._REFUSED] * 2


def test_a_kill_during_export_keeps_the_earlier_model(glue_reference, tiny_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("sparse_model", "config.json", "results.json", "metrics.jsonl"):
        os.system(f"cp -r {glue_reference / name} {out / name}")
    earlier = (out / "sparse_model" / "flax_model.msgpack").read_bytes()

    def killed_while_writing(self, path, **kwargs):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "flax_model.msgpack").write_bytes(b"")  # a partial file, then the kill
        raise KeyboardInterrupt

    monkeypatch.setattr("transformers.FlaxPreTrainedModel.save_pretrained", killed_while_writing)
    flags = glue_flags(tiny_model, out, "--max_steps", "2", "--overwrite")
    assert glue_launcher.main(flags) == 130
    assert "rerun the same command to resume" in one_error_line(capsys.readouterr().err)
    assert (out / "sparse_model" / "flax_model.msgpack").read_bytes() == earlier
    assert not (out / "results.json").exists()  # --overwrite removed the earlier results; the new run is unfinished
    assert glue_check.main([str(out)]) == 2
    assert "no finished GLUE run" in one_error_line(capsys.readouterr().err)


@pytest.mark.slow  # the GLUE test above checks the same mechanism in the fast suite
def test_nlg_resumes_bit_identically_after_sigkill(gpt2_folder, tmp_path, capsys):
    reference, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    assert nlg_launcher.main(nlg_flags(gpt2_folder, reference)) == 0
    steps = json.loads((reference / "results.json").read_text())["steps"]
    kill = random.randrange(3, steps)
    killed = kill_in_subprocess(kill, "nlg", nlg_flags(gpt2_folder, resumed))
    assert killed.returncode == -signal.SIGKILL, (kill, killed.stderr[-2000:])
    assert not (resumed / "results.json").exists() and latest_checkpoint(resumed) >= 2, kill
    assert nlg_launcher.main(nlg_flags(gpt2_folder, resumed)) == 0, kill
    assert outputs(resumed) == outputs(reference), kill
    assert (resumed / "predictions.txt").read_text() == (reference / "predictions.txt").read_text()


@pytest.mark.slow
def test_a_checkpoint_from_one_mesh_resumes_on_another(tiny_model, tmp_path, capsys, monkeypatch):
    """Stopped on a 2 x 2 mesh (weights sharded in halves), resumed on 4 x 1 (replicated): the run finishes
    as the uninterrupted 2 x 2 run does, to the reduction-order differences of the two layouts."""
    sharded = ["--num_devices", "4", "--batch_size", "4", "--mesh", "data=2,fsdp=2"]
    reference = tmp_path / "uninterrupted"
    assert glue_launcher.main(glue_flags(tiny_model, reference, *sharded)) == 0
    with monkeypatch.context() as patch:
        patch.setattr(TrainLoop, "_finish", finish_then_signal(5, signal.SIGTERM))
        assert glue_launcher.main(glue_flags(tiny_model, tmp_path / "moved", *sharded)) == 128 + signal.SIGTERM
    stopped = latest_checkpoint(tmp_path / "moved")
    assert stopped in (5, 6)
    capsys.readouterr()
    moved_flags = glue_flags(
        tiny_model, tmp_path / "moved", "--num_devices", "4", "--batch_size", "4", "--mesh", "data=4"
    )
    assert glue_launcher.main(moved_flags) == 0
    moved, expected = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "moved", reference))
    assert moved["mesh"] == {"data": 4, "fsdp": 1} and expected["mesh"] == {"data": 2, "fsdp": 2}
    assert moved["best"]["validation"] == expected["best"]["validation"]
    assert moved["final"]["train_loss"] == pytest.approx(expected["final"]["train_loss"], rel=1e-5)
