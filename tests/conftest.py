"""Test setup: 8 fake CPU devices (set before jax is imported), no network, tiny models."""

import os

# 8 fake CPU devices; and the tiny models' programs compiled with LLVM's cheap passes only and XLA's older loop
# emitters for fusions: they run in milliseconds, so most of a test's time is compiling them (about a quarter
# less with the cheap passes, about a third less again without the fusion emitters; the README gives the suite's
# times).
_FLAGS = (
    "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    " --xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false"
)
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAGS).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# Many tests compile the same tiny programs (e.g. one GLUE run per task): a persistent compilation cache,
# private to this test run, compiles each once. Under pytest-xdist (`-n`), the workers of one run share it
# (its file lock, on when a size limit is set, keeps a worker from reading an entry another is writing).
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
_CACHE = Path(tempfile.gettempdir()) / f"pst_jax_xla_cache_{_RUN}" if _RUN else tempfile.mkdtemp(prefix="pst_jax_xla_")
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_compilation_cache_max_size", 2**32)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
# Tests compare with float64 NumPy at rtol 1e-5: on a GPU, float32 matmuls would otherwise run in TF32.
jax.config.update("jax_default_matmul_precision", "highest")

from tests import tiny  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def devices():
    found = jax.devices()
    assert len(found) == 8, f"expected 8 fake CPU devices, got {found}"
    return found


@pytest.fixture(scope="session")
def bert():
    return tiny.bert()


@pytest.fixture(scope="session")
def roberta():
    return tiny.roberta()


@pytest.fixture(scope="session")
def gpt2():
    return tiny.gpt2()


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """GPT-2's tokenizer, built from ``tests/fixtures/gpt2_tokenizer`` (vocab.json and merges.txt)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(__file__).parent / "fixtures" / "gpt2_tokenizer")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A one-layer BERT folder whose vocabulary covers the GLUE fixtures' words."""
    from pst_jax.glue.loaders import load_glue_dir
    from pst_jax.glue.tasks import TASKS

    texts = []
    for task in TASKS.values():
        for split in load_glue_dir(task, str(FIXTURES / "glue")).values():
            for key in task.text_keys:
                texts.extend(split[key])
    # One layer: the launcher's plumbing is under test here, and each run compiles half as much.
    return tiny.save_bert_folder(tmp_path_factory.mktemp("tiny_bert"), texts, num_layers=1)


@pytest.fixture(scope="session")
def gpt2_folder(tmp_path_factory) -> str:
    """A tiny GPT-2 (1 block, 32 wide, GPT-2's 50,257-token vocabulary) saved with GPT-2's tokenizer."""
    from transformers import FlaxGPT2LMHeadModel, GPT2Config

    folder = tmp_path_factory.mktemp("tiny_gpt2")
    config = GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=256, initializer_range=0.2)
    FlaxGPT2LMHeadModel(config, seed=0).save_pretrained(folder)
    for name in (FIXTURES / "gpt2_tokenizer").iterdir():
        shutil.copy(name, folder)
    return str(folder)


def pytest_sessionfinish(session):
    """The run's compilation cache goes when the run ends (under xdist: when the controller ends)."""
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(_CACHE, ignore_errors=True)
