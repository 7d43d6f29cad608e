"""Settings declared once: a dataclass field with its help text, from which the launchers derive their flags.

:func:`setting` declares a field (default, help, and how its flag differs from the plain ``--name VALUE``);
:func:`add_flags` adds a flag per field of a config dataclass to an ``argparse`` parser, and
:func:`from_flags` turns the parsed flags back into the dataclass. Checking the values stays with each
config's check function (:func:`~pst_jax.training.method_config.check_method_config` and the tasks').

Example:
  >>> import argparse, dataclasses
  >>> @dataclasses.dataclass
  ... class Demo:
  ...     rank: int = setting(8, "rank of the factors")
  ...     train_head: bool = setting(True, "train only the factors", flag="freeze_head", invert=True)
  >>> p = argparse.ArgumentParser()
  >>> add_flags(p, Demo)
  >>> from_flags(Demo, vars(p.parse_args(["--rank", "4", "--freeze_head"])))
  Demo(rank=4, train_head=False)
"""

import argparse
import dataclasses
import types
import typing
from typing import Any


def setting(
    default: Any, help: str, /, *, flag: str | None = None, invert: bool = False, **argparse_kwargs: Any
) -> Any:
    """A dataclass field with its flag's help text.

    Args:
      default: the field's default (a tuple or other immutable value; no factories are needed here).
      help: the flag's help text; the default is appended when it is not ``None`` and not already named.
      flag: the flag's name, when it is not the field's (``--freeze_head`` for ``train_head``).
      invert: a boolean field whose flag is ``store_true`` and sets the field to ``not default``.
      **argparse_kwargs: what the flag adds to, or overrides in, the derived ``add_argument`` arguments
        (e.g. ``nargs="+"``, a parsing ``type``, or ``default=None`` where the launcher fills it in).
    """
    metadata = {"help": help, "flag": flag, "invert": invert, "argparse": argparse_kwargs}
    return dataclasses.field(default=default, metadata=metadata)


def _value_type(annotation: Any) -> Any:
    """The type a flag parses to: ``X`` for ``X | None``; ``None`` for a bool."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return None if annotation is bool else annotation


def _argument(field: dataclasses.Field, annotation: Any) -> tuple[str, dict[str, Any]]:
    """``(flag name, add_argument keyword arguments)`` of one field."""
    meta = field.metadata
    name = meta.get("flag") or field.name
    if meta.get("invert"):
        kwargs: dict[str, Any] = {"action": "store_true"}
    else:
        kwargs = {"default": field.default}
        value_type = _value_type(annotation)
        if value_type is None and "action" not in meta.get("argparse", {}):
            raise TypeError(
                f"boolean setting {field.name!r} needs invert=True or an action (a flag would parse a string)"
            )
        if value_type in (int, float):
            kwargs["type"] = value_type
    kwargs.update(meta.get("argparse", {}))
    help_text = meta.get("help", "")
    default = kwargs.get("default")
    if default is not None and default is not False and "default" not in help_text:
        help_text += f" (default {','.join(default) if isinstance(default, tuple) else default})"
    kwargs["help"] = help_text
    return name, kwargs


def add_flags(parser: argparse.ArgumentParser, config: type, skip: tuple[str, ...] = ()) -> None:
    """Adds ``--name`` for every field of the dataclass ``config`` declared with :func:`setting`, except ``skip``
    (flag or field names)."""
    hints = typing.get_type_hints(config)
    for field in dataclasses.fields(config):
        if "help" not in field.metadata:
            continue
        name, kwargs = _argument(field, hints[field.name])
        if name not in skip and field.name not in skip:
            parser.add_argument(f"--{name}", **kwargs)


def from_flags(config: type, args: dict[str, Any]) -> Any:
    """The dataclass ``config`` from parsed flags (``vars(parser.parse_args())``); fields whose flag is absent
    keep their defaults, and keys that are not flags of ``config`` are an error (a ``TypeError``)."""
    args = dict(args)
    for field in dataclasses.fields(config):
        flag = field.metadata.get("flag")
        if flag and flag in args:
            value = args.pop(flag)
            if field.metadata.get("invert"):
                value = (not field.default) if value else field.default
            args[field.name] = value
    return config(**args)
