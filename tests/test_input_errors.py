"""Bad input to every launcher is one ``error:`` line naming the value and the fix, exit code 2, no traceback.

Each case runs the launcher's ``main`` in process on tiny local models; where the input can be checked without
the weights, loading them fails the test. Nothing here trains.
"""

import json
import shutil
from pathlib import Path

import pytest

from experiments import benchmark, benchmark_topk, glue, glue_check, nlg
from tests import tiny

FIXTURES = Path(__file__).parent / "fixtures"
GLUE_DATA = FIXTURES / "glue"
E2E = FIXTURES / "nlg" / "e2e"


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT (40 positions, 32 wide) and a tiny GPT-2 (256 positions, 32 wide), with their tokenizers."""
    from transformers import FlaxGPT2LMHeadModel, GPT2Config

    root = tmp_path_factory.mktemp("models")
    texts = [line for name in ("train.tsv", "dev.tsv") for line in (GLUE_DATA / "SST-2" / name).read_text().split()]
    bert = Path(tiny.save_bert_folder(root / "bert", texts, num_layers=1))
    gpt2 = root / "gpt2"
    FlaxGPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=256), seed=0).save_pretrained(gpt2)
    for name in (FIXTURES / "gpt2_tokenizer").iterdir():
        shutil.copy(name, gpt2)
    return {"glue": bert, "nlg": gpt2}


def glue_argv(model, *extra) -> list[str]:
    data = [] if "--train_file" in extra else ["--data_dir", str(GLUE_DATA)]
    return ["--model", str(model), *data, "--max_length", "32", "--max_steps", "1", "--num_devices", "1", *extra]


def nlg_argv(model, *extra) -> list[str]:
    data = [] if "--train_file" in extra else ["--data_dir", str(E2E)]
    argv = ["--model", str(model), *data, "--max_length", "64", "--max_new_tokens", "8", "--warmup_steps", "0"]
    return [*argv, "--max_steps", "1", "--num_devices", "1", *extra]


LAUNCHERS = {"glue": (glue, glue_argv), "nlg": (nlg, nlg_argv)}


def error_line(launcher, argv, capsys) -> str:
    """Runs ``launcher.main(argv)``; asserts exit code 2 and one ``error:`` line on stderr, which it returns."""
    assert launcher.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    return err.rstrip("\n")


@pytest.fixture
def no_weights(monkeypatch):
    """Loading any model's weights fails the test: the input must be refused before."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(transformers.FlaxAutoModelForSequenceClassification, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.FlaxGPT2LMHeadModel, "from_pretrained", refuse)


@pytest.fixture
def no_training(monkeypatch):
    """Training fails the test: the input must be refused once the weights load, before any step."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr("pst_jax.glue.run.fit", refuse)
    monkeypatch.setattr("pst_jax.nlg.run.fit", refuse)


# ---------------------------------------------------------------------------------------------------------------
# Model folders, output folder, seed: GLUE and NLG
# ---------------------------------------------------------------------------------------------------------------


def _break(folder: Path, kind: str) -> None:
    if kind == "corrupt config.json":
        (folder / "config.json").write_text("{not json")
    elif kind == "no model_type":
        (folder / "config.json").write_text(json.dumps({"hidden_size": 32}))
    elif kind == "no weights":
        (folder / "flax_model.msgpack").unlink()
    elif kind == "PyTorch weights only":
        (folder / "flax_model.msgpack").rename(folder / "pytorch_model.bin")
    elif kind == "no tokenizer":
        for name in ("tokenizer.json", "vocab.txt", "vocab.json"):
            (folder / name).unlink(missing_ok=True)


BROKEN = {
    "corrupt config.json": "config.json does not parse",
    "no model_type": "config.json names no model_type",
    "no weights": "holds no weights (flax_model.msgpack or model.safetensors)",
    "PyTorch weights only": "holds PyTorch weights only (pytorch_model.bin)",
    "no tokenizer": "holds no tokenizer",
}


@pytest.mark.parametrize("task", LAUNCHERS)
@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_model_folder_is_refused_before_loading(task, kind, models, tmp_path, capsys, no_weights):
    folder = tmp_path / "model"
    shutil.copytree(models[task], folder)
    _break(folder, kind)
    launcher, argv = LAUNCHERS[task]
    err = error_line(launcher, argv(folder, "--output_dir", str(tmp_path / "out")), capsys)
    assert err.startswith(f"error: --model {folder}") and BROKEN[kind] in err and "save_pretrained" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", LAUNCHERS)
@pytest.mark.parametrize(("name", "message"), [("empty_dir", "holds no config.json"), ("model.bin", "is a file")])
def test_an_empty_folder_or_a_file_is_no_model(task, name, message, tmp_path, capsys, no_weights):
    """AutoConfig guesses a type from the name of a folder without config.json: ``empty_dir`` was an 'mpt'."""
    model = tmp_path / name
    if name.endswith(".bin"):
        model.write_text("x")
    else:
        model.mkdir()
    launcher, argv = LAUNCHERS[task]
    err = error_line(launcher, argv(model, "--output_dir", str(tmp_path / "out")), capsys)
    assert err.startswith(f"error: --model {model} {message}") and "pass a folder saved with save_pretrained" in err


@pytest.mark.parametrize("task", LAUNCHERS)
def test_unreadable_weights_are_one_line(task, models, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(models[task], folder)
    (folder / "flax_model.msgpack").write_bytes(b"not msgpack")
    launcher, argv = LAUNCHERS[task]
    err = error_line(launcher, argv(folder, "--output_dir", str(tmp_path / "out")), capsys)
    assert f"the weights of model {folder} do not load" in err


@pytest.mark.parametrize("task", LAUNCHERS)
@pytest.mark.parametrize("under", [False, True])
def test_output_dir_that_is_or_lies_under_a_file(task, under, models, tmp_path, capsys, no_weights):
    (tmp_path / "somefile").write_text("x")
    out = tmp_path / "somefile" / "run" if under else tmp_path / "somefile"
    launcher, argv = LAUNCHERS[task]
    err = error_line(launcher, argv(models[task], "--output_dir", str(out)), capsys)
    what = f"lies under {tmp_path / 'somefile'}, which is a file" if under else "is a file"
    assert err == f"error: --output_dir {out} {what}, not a folder; give a folder (new or existing)"


@pytest.mark.parametrize("task", LAUNCHERS)
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_outside_what_numpy_and_jax_take(task, seed, models, tmp_path, capsys, no_weights):
    launcher, argv = LAUNCHERS[task]
    err = error_line(launcher, argv(models[task], "--seed", seed, "--output_dir", str(tmp_path)), capsys)
    assert err == f"error: --seed must be in [0, 4294967295], got {seed}"


# ---------------------------------------------------------------------------------------------------------------
# Lengths and ranks
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "length", "least"), [("sst2", 1, 3), ("rte", 4, 5)])
def test_glue_max_length_must_hold_the_special_tokens_and_some_text(
    task, length, least, models, tmp_path, capsys, no_weights
):
    argv = glue_argv(models["glue"], "--task", task, "--output_dir", str(tmp_path))
    err = error_line(glue, [*argv, "--max_length", str(length)], capsys)
    assert err.startswith(f"error: --max_length {length} leaves no room for text: a {task} row of a bert model")
    assert err.endswith(f"give at least {least} (one token of each text)")


def test_nlg_rows_whose_target_is_cut_off_are_refused_before_loading(models, tmp_path, capsys, no_weights):
    """E2E sources take ~30 tokens: --max_length 12 leaves no target token (loss 0, perplexity 1, silently)."""
    argv = nlg_argv(models["nlg"], "--max_length", "12", "--output_dir", str(tmp_path / "out"))
    err = error_line(nlg, argv, capsys)
    assert err.startswith("error: 39 of 39 train rows keep no target token within --max_length 12")
    assert f"the first in {E2E / 'train.txt'}: 'name : Cocum" in err
    assert err.endswith("raise --max_length or shorten the sources")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("task", "flags", "matrix"),
    [
        ("glue", ("--weight_rank", "33"), "bert/encoder/layer/0/attention/output/dense/kernel (32 x 32)"),
        ("glue", ("--mask_rank", "33"), "bert/encoder/layer/0/attention/output/dense/kernel (32 x 32)"),
        ("glue", ("--method", "lora", "--weight_rank", "40"), "bert/encoder/layer/0/attention/output/dense/kernel"),
        ("nlg", ("--weight_rank", "33"), "transformer/h/0/attn/c_attn/kernel:q (32 x 32)"),
    ],
)
def test_a_rank_above_a_matrix_dimension_is_refused_before_training(
    task, flags, matrix, models, tmp_path, capsys, no_training
):
    launcher, argv = LAUNCHERS[task]
    err = error_line(launcher, argv(models[task], *flags, "--output_dir", str(tmp_path)), capsys)
    assert err.startswith(f"error: --{flags[-2][2:]} {flags[-1]} exceeds the smaller dimension")
    assert matrix in err and err.endswith("give at most 32")


# ---------------------------------------------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------------------------------------------


def test_an_empty_nlg_training_file_is_named(models, tmp_path, capsys, no_weights):
    (tmp_path / "empty.jsonl").write_text("")
    files = ["--train_file", str(tmp_path / "empty.jsonl"), "--validation_file", str(E2E / "valid.txt")]
    err = error_line(nlg, nlg_argv(models["nlg"], *files, "--max_steps", "5", "--output_dir", str(tmp_path)), capsys)
    assert (
        err
        == f"error: e2e train file {tmp_path / 'empty.jsonl'} holds no examples (no input with a reference); fill it"
    )


LATIN1 = "caf\xe9".encode("latin-1")  # 'café' in Latin-1: byte 0xe9 is not UTF-8


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("SST-2/train.tsv", b"sentence\tlabel\ngood film\t1\n" + LATIN1 + b" film\t0\n", "line 3, column 4"),
        ("train.csv", b"sentence,label\ngood film,1\n" + LATIN1 + b" film,0\n", "line 3, column 4"),
        ("train.jsonl", b'{"sentence": "good", "label": 1}\n{"sentence": "' + LATIN1 + b'", "label": 0}\n', "line 2"),
    ],
)
def test_a_glue_file_that_is_not_utf8_is_named_with_its_line(name, text, where, models, tmp_path, capsys, no_weights):
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text)
    if name.startswith("SST-2"):
        shutil.copy(GLUE_DATA / "SST-2" / "dev.tsv", path.parent)
        data = ["--data_dir", str(tmp_path)]
    else:
        data = ["--train_file", str(path), "--validation_file", str(GLUE_DATA / "SST-2" / "dev.tsv")]
    err = error_line(glue, [*glue_argv(models["glue"], *data), "--output_dir", str(tmp_path / "out")], capsys)
    assert err.startswith(f"error: {path} {where}") and err.endswith("byte 0xe9 is not UTF-8; save the file as UTF-8")


@pytest.mark.parametrize(("task", "suffix"), [("e2e", ".txt"), ("dart", ".json")])
def test_an_nlg_file_that_is_not_utf8_is_named_with_its_line(task, suffix, models, tmp_path, capsys, no_weights):
    path = tmp_path / f"valid{suffix}"
    path.write_bytes(b"name : A||fine\n\nname : " + LATIN1 + b"||fine\n")
    files = ["--task", task, "--train_file", str(path), "--validation_file", str(path)]
    err = error_line(nlg, nlg_argv(models["nlg"], *files, "--output_dir", str(tmp_path / "out")), capsys)
    assert err == f"error: {path} line 3, column 11: byte 0xe9 is not UTF-8; save the file as UTF-8"


# ---------------------------------------------------------------------------------------------------------------
# glue_check: only a finished GLUE run
# ---------------------------------------------------------------------------------------------------------------


def _run_folder(tmp_path: Path, kind: str) -> Path:
    out = tmp_path / kind
    if kind == "missing":
        return out
    out.mkdir()
    if kind == "an NLG run":
        (out / "results.json").write_text(json.dumps({"task": "e2e", "status": "finished", "metrics": {}}))
    elif kind == "no sparse_model":
        (out / "results.json").write_text(json.dumps({"task": "sst2", "status": "finished", "best": {}}))
        (out / "config.json").write_text(json.dumps({"task": "sst2"}))
    return out


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "holds no finished GLUE run (no readable results.json); run experiments.glue"),
        ("empty", "holds no finished GLUE run (no readable results.json); run experiments.glue"),
        ("an NLG run", "holds a run of task 'e2e', not a GLUE one (cola, "),
        ("no sparse_model", "is not a complete GLUE run (no folder "),
    ],
)
def test_glue_check_takes_only_a_finished_glue_run(kind, message, tmp_path, capsys, no_weights):
    out = _run_folder(tmp_path, kind)
    err = error_line(glue_check, [str(out)], capsys)
    assert err.startswith(f"error: {out} {message}"), err


# ---------------------------------------------------------------------------------------------------------------
# The benchmarks' own flags (checked before any model is built)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seq_len", "100"], "--seq_len 100 exceeds tiny-bert's 64 positions; lower it"),
        (["--rank", "64"], "--rank 64 exceeds the 32 x 32 matrices of tiny-bert; give at most 32"),
        (["--rank", "0"], "--rank must be a positive integer, got 0"),
        (["--steps", "0"], "--steps must be a positive integer, got 0"),
        (["--seq_len", "-1"], "--seq_len must be a positive integer, got -1"),
        (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
        (["--num_devices", "0"], "--num_devices must be in [1, 8], got 0"),
        (["--sparsity", "1"], "--sparsity must be in [0, 1), got 1.0"),
        (["--sparsity", "nan"], "--sparsity must be in [0, 1), got nan"),
        (["--sparsity", "-0.1"], "--sparsity must be in [0, 1), got -0.1"),
        (["--model", "FILE"], "unknown model 'FILE'; choose from bert-base, "),
        (["--methods", ","], "--methods names no method; choose from pst, "),
        (["--output", "FILE/b.json"], "--output FILE/b.json lies under FILE, which is a file; give a JSON file's path"),
    ],
)
def test_benchmark_flags(flags, message, tmp_path, capsys, no_weights):
    (tmp_path / "FILE").write_text("x")
    flags = [flag.replace("FILE", str(tmp_path / "FILE")) for flag in flags]
    argv = ["--model", "tiny-bert", "--batch_size", "8", "--seq_len", "16", *flags]
    err = error_line(benchmark, argv, capsys)
    assert err.startswith("error: " + message.replace("FILE", str(tmp_path / "FILE"))), err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sparsity", "1"], "--sparsity must be in [0, 1), got 1.0"),
        (["--repeats", "0"], "--repeats must be a positive integer, got 0"),
        (["--methods", "pst,sorting"], "unknown method 'sorting' in --methods; choose from pst, "),
        (["--shapes", "gpt3"], "unknown --shapes 'gpt3'; choose from bert-base, gpt2-medium"),
        (["--shapes", "gpt2-medium", "--methods", "pst"], "--shapes times the selects alone; --methods always runs"),
    ],
)
def test_benchmark_topk_flags(flags, message, capsys):
    assert error_line(benchmark_topk, flags, capsys).startswith(f"error: {message}")
