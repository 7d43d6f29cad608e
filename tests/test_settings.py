"""Flags derived from config fields: a boolean needs a declared flag form, never a string-parsing flag."""

import argparse
import dataclasses

import pytest

from pst_jax.training.settings import add_flags, from_flags, setting


def test_a_plain_boolean_setting_is_refused_and_an_inverted_one_round_trips():
    @dataclasses.dataclass
    class Plain:
        verbose: bool = setting(False, "print more")

    with pytest.raises(TypeError, match="boolean setting 'verbose' needs invert=True"):
        add_flags(argparse.ArgumentParser(), Plain)

    @dataclasses.dataclass
    class Inverted:
        train_head: bool = setting(True, "train only the factors", flag="freeze_head", invert=True)

    parser = argparse.ArgumentParser()
    add_flags(parser, Inverted)
    assert from_flags(Inverted, vars(parser.parse_args([]))) == Inverted(train_head=True)
    assert from_flags(Inverted, vars(parser.parse_args(["--freeze_head"]))) == Inverted(train_head=False)


def test_recipes_fill_only_what_is_unset():
    """The embedded CPU recipe and the paper's fill the settings left at None; an explicit flag always wins."""
    from pst_jax.glue.config import GlueConfig, resolve_recipe
    from pst_jax.glue.tasks import get_task

    sst2, mnli = get_task("sst2"), get_task("mnli")
    embedded = resolve_recipe(GlueConfig(), sst2, embedded=True)
    assert (embedded.learning_rate, embedded.epochs, embedded.max_length) == (8e-4, 1.8, 32)
    assert (embedded.dtype, embedded.frozen_dtype) == ("bfloat16", "bfloat16")
    paper = resolve_recipe(GlueConfig(), mnli, embedded=False)
    assert (paper.learning_rate, paper.epochs, paper.max_length) == (3e-5, 10, 128)
    assert (paper.dtype, paper.frozen_dtype) == ("float32", "float32")
    explicit = resolve_recipe(GlueConfig(dtype="float32", epochs=1), sst2, embedded=True)
    assert (explicit.dtype, explicit.frozen_dtype, explicit.epochs) == ("float32", "bfloat16", 1)


def test_fractional_epochs_train_the_whole_steps_they_cover():
    """--epochs 1.8 trains floor(1.8 * steps per epoch) steps; --max_steps overrides; a run takes at least one."""
    from pst_jax.training.run import train_steps

    assert train_steps(1.8, None, 368) == (662, 2)  # the embedded default: 368 batches of 32 an epoch
    assert train_steps(2, None, 368) == (736, 2)
    assert train_steps(0.29, None, 100) == (29, 1)  # 0.29 * 100 is 28.999999999999996 in floating point
    assert train_steps(0.001, None, 368) == (1, 1)
    assert train_steps(1.8, 40, 368) == (40, 1)
    assert train_steps(1, 700, 368) == (700, 2)  # --max_steps past an epoch: the epochs it touches
