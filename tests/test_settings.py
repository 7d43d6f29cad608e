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
