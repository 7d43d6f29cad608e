"""Test setup: 8 fake CPU devices (set before jax is imported), no network, tiny models."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# Many tests compile the same tiny programs (e.g. one GLUE run per task): a persistent compilation cache,
# private to this session, compiles each once.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="pst_jax_xla_cache_"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
# Tests compare with float64 NumPy at rtol 1e-5: on a GPU, float32 matmuls would otherwise run in TF32.
jax.config.update("jax_default_matmul_precision", "highest")

from tests import tiny  # noqa: E402


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
