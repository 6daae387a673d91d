"""Type and range checks of configuration values: every field of a config dataclass or of a checkpoint's
stored model config is checked against its type hint, integers against the bounds below, with one
:class:`ValueError` naming the owner and the key (:func:`check_config`)."""
from __future__ import annotations

import collections.abc
import math
import types
import typing
from typing import Any, Dict, Iterable, Mapping, Union

#: Integer config values that count input / output channels or classes: 1 <= value < MAX_CHANNELS.
CHANNEL_KEYS = ("in_channels", "out_channels", "num_classes", "label_nc", "output_nc")


#: Upper bound (exclusive) of channel and class counts in a stored model config.
MAX_CHANNELS = 10_000


#: Upper bound (exclusive) of every other integer of a stored model config (widths, depths, factors).
MAX_CONFIG_INT = 100_000


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    return {bool: "true/false", int: "an integer", float: "a finite number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _value_error(owner: str, key: str, hint: Any, value: Any, extra: str = "") -> ValueError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return ValueError(f"{owner}: {key!r} must be {_type_name(hint)}{extra}, got {shown} ({type(value).__name__})")


def check_config_value(owner: str, key: str, value: Any, hint: Any) -> None:
    """Check one value of a stored (JSON) model config against its type annotation ``hint``.

    Integers are not booleans nor strings; channel and class counts (:data:`CHANNEL_KEYS`) lie in
    [1, :data:`MAX_CHANNELS`), other integers in [0, :data:`MAX_CONFIG_INT`); floats are finite;
    ``Optional[X]`` admits ``null``; sequences are JSON lists. Unknown annotations accept any value.

    Raises:
        ValueError: ``"<owner>: 'key' must be ..., got ..."`` (one line).
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message (with its range)
            return check_config_value(owner, key, value, options[0])
        for a in options:
            try:
                return check_config_value(owner, key, value, a)
            except ValueError:
                pass
        raise _value_error(owner, key, hint, value)
    if hint is bool:
        if not isinstance(value, bool):
            raise _value_error(owner, key, hint, value)
    elif hint is int:
        lo, hi = (1, MAX_CHANNELS) if key in CHANNEL_KEYS else (0, MAX_CONFIG_INT)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
            raise _value_error(owner, key, hint, value, f" in [{lo}, {hi})")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _value_error(owner, key, hint, value)
    elif hint is str:
        if not isinstance(value, str):
            raise _value_error(owner, key, hint, value)
    elif origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)) or len(value) > 64:
            raise _value_error(owner, key, hint, value)
        if args and args[0] is not Ellipsis:
            for v in value:
                check_config_value(owner, key, v, args[0])


def check_config(owner: str, config: Any, hints: Mapping[str, Any], required: Iterable[str] = ()) -> Dict[str, Any]:
    """Check a stored model config (a JSON object) against the keyword arguments it feeds:
    ``hints`` maps every accepted key to its type annotation, ``required`` lists the keys without
    default. Values are checked with :func:`check_config_value`. Returns ``config`` as a dict.

    Raises:
        ValueError: not a JSON object, unknown or missing keys, or a value of the wrong type or
            out of range (one line starting with ``owner``).
    """
    if not isinstance(config, dict):
        shown = "null" if config is None else f"{type(config).__name__} {str(config)[:60]!r}"
        raise ValueError(f"{owner}: config must be a JSON object, got {shown}")
    unknown = sorted(str(k) for k in config if k not in hints)
    if unknown:
        raise ValueError(f"{owner}: unknown config keys {unknown} (known: {sorted(hints)})")
    missing = sorted(k for k in required if k not in config)
    if missing:
        raise ValueError(f"{owner}: config lacks {missing}")
    for k, v in config.items():
        check_config_value(owner, k, v, hints[k])
    return dict(config)
