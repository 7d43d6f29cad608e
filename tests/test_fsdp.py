"""FSDP over the mesh's ``fsdp`` axis: the sharding rule, weights and state held in quarters, same losses."""

import dataclasses
import math

import chex
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from pst_jax.core.rules import BERT_RULES, make_plan
from pst_jax.training.errors import InputError
from pst_jax.training.losses import classification_loss
from pst_jax.training.method_config import MethodConfig, check_run_settings
from pst_jax.training.run import setup_run
from pst_jax.training.sharding import MIN_SHARD_BYTES, fsdp_spec, make_mesh, mesh_from_flag, shard_batch
from tests import tiny


@pytest.mark.parametrize(
    ("shape", "fsdp", "expected"),
    [
        ((768, 3072), 4, P(None, "fsdp")),  # the largest axis
        ((3072, 768), 4, P("fsdp", None)),
        ((30522, 768), 4, P(None, "fsdp")),  # 30522 is not divisible by 4: the next largest
        ((30522, 7), 4, P()),  # no axis divisible
        ((768,), 4, P("fsdp")),  # given 8-byte items (6 KiB): above the threshold, so a vector is sharded too
        ((768, 3072), 1, P()),  # fsdp=1: replicated
        ((), 4, P()),
    ],
)
def test_fsdp_spec_shards_the_largest_divisible_axis(shape, fsdp, expected):
    itemsize = 8 if shape == (768,) else 4  # 6 KiB: above the threshold
    assert fsdp_spec(shape, itemsize, fsdp) == expected


def test_small_arrays_stay_whole():
    assert fsdp_spec((MIN_SHARD_BYTES // 4 - 4,), 4, 4) == P()
    assert fsdp_spec((MIN_SHARD_BYTES // 4,), 4, 4) == P("fsdp")


def test_mesh_flag(devices):
    assert mesh_from_flag("data=2,fsdp=2", devices[:4]).shape == {"data": 2, "fsdp": 2}
    assert mesh_from_flag("fsdp=4", devices).shape == {"data": 2, "fsdp": 4}
    assert mesh_from_flag(None, devices[:4]).shape == {"data": 4, "fsdp": 1}
    for flag, message in [
        ("data=3,fsdp=2", "data x fsdp must be the 4 devices used, got 3 x 2"),
        ("fsdp=3", "fsdp=3 does not divide the 4 devices"),
        ("model=2", "expected data=D,fsdp=F with positive sizes"),
        ("data=0", "expected data=D,fsdp=F with positive sizes"),
    ]:
        with pytest.raises(InputError, match=message):
            check_run_settings(_on_devices(flag, 4))


def _on_devices(flag: str, n: int) -> MethodConfig:
    """A config with ``--mesh flag`` on the first ``n`` devices (``num_devices`` is each task's setting)."""

    @dataclasses.dataclass
    class Config(MethodConfig):
        num_devices: int | None = n

    return Config(mesh=flag)


@dataclasses.dataclass
class Seeded(MethodConfig):
    seed: int = 0


def _run(model, mesh, steps=3):
    cfg = Seeded(sparsity=0.5, initial_warmup=0.0, final_warmup=0.0)
    plan = make_plan(model.params, BERT_RULES)
    setup = setup_run(cfg, model.params, plan, classification_loss(model), mesh, steps, learning_rate=1e-2)
    state, rng, losses = setup.state, np.random.default_rng(1), []
    for t in range(steps):
        batch = shard_batch(tiny.classification_batch(rng), mesh)
        state, metrics = setup.train_step(state, setup.frozen, batch, setup.schedule(t))
        losses.append(float(metrics["loss"]))
    return setup, state, losses


@pytest.mark.slow  # two multi-device runs; test_glue's 4 x 2 mesh run covers fsdp in the fast suite
def test_fsdp4_holds_a_quarter_of_each_large_weight_and_matches_the_replicated_run(bert, devices):
    sharded, state, losses = _run(bert, make_mesh(devices[:4], fsdp=4))
    _, replicated_state, replicated_losses = _run(bert, make_mesh(devices[:4]))

    for path, weight in sharded.frozen.items():
        shard = weight.addressable_shards[0].data
        if weight.nbytes >= MIN_SHARD_BYTES and any(d % 4 == 0 for d in weight.shape):
            assert math.prod(shard.shape) * 4 == weight.size, (path, weight.shape, shard.shape)
            assert {s.device for s in weight.addressable_shards} == set(devices[:4])
        else:
            assert shard.shape == weight.shape, path
    large = sum(w.nbytes for w in sharded.frozen.values() if w.nbytes >= MIN_SHARD_BYTES)
    per_device = sum(w.addressable_shards[0].data.nbytes for w in sharded.frozen.values())
    assert per_device < 0.3 * large + (sum(w.nbytes for w in sharded.frozen.values()) - large)
    # the trainable factors and their Adam moments keep the rule's sharding after a step
    for leaf in jax.tree.leaves((state.trainable, state.opt_state)):
        expected = fsdp_spec(leaf.shape, leaf.dtype.itemsize, 4)
        assert leaf.sharding.spec == expected or (expected == P() and leaf.sharding.is_fully_replicated)

    assert losses[0] != losses[-1]
    np.testing.assert_allclose(losses, replicated_losses, rtol=1e-5)
    chex.assert_trees_all_close(
        jax.device_get(state.trainable), jax.device_get(replicated_state.trainable), rtol=1e-4, atol=1e-5
    )
