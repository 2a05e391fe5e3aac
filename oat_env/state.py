"""Checks for checkpoint state: every ``load_state_dict`` of the prompt stream, the tasks and the vector envs
validates the whole state with these helpers before it changes anything.

Loading is two-phase: ``check_state_dict(state, where)`` validates without touching the object and returns a
:data:`StateCommit` that applies the state and cannot fail. A corrupt or mismatched state therefore raises a
``TypeError`` (wrong type) or ``ValueError`` (wrong value, missing or unknown key) that names the field
(``where``, e.g. ``state['task']['queries']``) and leaves the object exactly as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from oat_env.data.records import PromptRecord

StateCommit = Callable[[], None]
_RECORD_KEYS = tuple(f.name for f in dataclasses.fields(PromptRecord))  # asdict(record)'s keys


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (error messages quote corrupt, possibly huge, values)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def state_field(where: str, key: str | int) -> str:
    """The name of ``where``'s entry ``key`` in error messages, e.g. ``state['task']``."""
    return f"{where}[{key!r}]"


def check_state_keys(
    state: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Mapping[str, Any]:
    """``state`` must be a mapping holding every ``required`` key and no key outside ``optional``."""
    if not isinstance(state, Mapping):
        raise TypeError(f"{where} must be a dict (as returned by state_dict()), got {type(state).__name__}")
    expected = [*required, *optional]
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"{where} is missing {missing} (expected keys {expected})")
    unknown = [k for k in state if k not in expected]
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown} (expected keys {expected})")
    return state


def check_state_int(value: Any, where: str, minimum: int = 0, maximum: int | None = None) -> int:
    """An int (not a bool, float or str: checkpoints hold exact counts) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where} must be an int, got {type(value).__name__} {short_repr(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{where} must be an int {bounds}, got {value}")
    return int(value)


def check_state_permutation(value: Any, where: str, n: int) -> np.ndarray:
    """A permutation of ``range(n)`` (a dataset epoch's serving order) as an int64 array."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{where} must be a list of ints, got {type(value).__name__}")
    order = np.asarray(value)
    if order.ndim != 1 or (order.size and (order.dtype == bool or not np.issubdtype(order.dtype, np.integer))):
        raise TypeError(f"{where} must be a flat list of ints, got {short_repr(value)}")
    if len(order) != n or not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(f"{where} must be a permutation of range({n}) (the dataset has {n} prompts), got {short_repr(value)}")
    return order.astype(np.int64)


def check_state_rng(value: Any, where: str, like: np.random.BitGenerator) -> dict[str, Any]:
    """A bit-generator state that ``like`` (the env's generator) accepts exactly as given.

    Tried on a scratch generator of the same type, so ``like`` itself is untouched; numpy would
    silently truncate some values (e.g. floats), so the state must also read back unchanged.
    """
    kind = type(like).__name__
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a dict (a numpy {kind} bit-generator state), got {type(value).__name__}")
    scratch = type(like)()
    try:
        scratch.state = dict(value)
        exact = _state_equal(scratch.state, value)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{where} is not a valid numpy {kind} bit-generator state: {detail}") from None
    if not exact:
        raise ValueError(f"{where} is not a valid numpy {kind} bit-generator state: it has extra or non-int values")
    return scratch.state


def _state_equal(a: Any, b: Any) -> bool:
    """Equality of nested generator states (dicts, ints, arrays or lists)."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return isinstance(a, Mapping) and isinstance(b, Mapping) and a.keys() == b.keys() and all(
            _state_equal(a[k], b[k]) for k in a
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return not isinstance(b, (bool, float, np.floating)) and bool(a == b)


def check_state_record(value: Any, where: str, max_prompt_length: int | None = None) -> PromptRecord:
    """A :class:`PromptRecord` from its ``asdict`` form, its prompt at most ``max_prompt_length`` long."""
    record = check_state_keys(value, where, ("prompt",), [k for k in _RECORD_KEYS if k != "prompt"])
    uid, meta = record.get("uid"), record.get("meta", {})
    if uid is not None and not isinstance(uid, str):
        raise TypeError(f"{state_field(where, 'uid')} must be a str or None, got {type(uid).__name__}")
    if not isinstance(meta, Mapping):
        raise TypeError(f"{state_field(where, 'meta')} must be a dict, got {type(meta).__name__}")
    try:
        out = PromptRecord(**{**record, "meta": dict(meta)})
    except TypeError as e:
        raise TypeError(f"{where} is not a valid prompt record: {e}") from None
    if max_prompt_length is not None and len(out.prompt) > max_prompt_length:
        raise ValueError(
            f"{state_field(where, 'prompt')} has {len(out.prompt)} characters, more than "
            f"max_prompt_length={max_prompt_length}"
        )
    return out


def check_state_list(value: Any, where: str, n: int | None = None, min_len: int = 0, why: str = "") -> Sequence[Any]:
    """A list of ``n`` items when given, else of at least ``min_len``; ``why`` explains the count in errors."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise TypeError(f"{where} must be a list, got {type(value).__name__}")
    reason = f" ({why})" if why else ""
    if n is not None and len(value) != n:
        raise ValueError(f"{where} has {len(value)} items, expected {n}{reason}")
    if len(value) < min_len:
        raise ValueError(f"{where} has {len(value)} items, expected at least {min_len}{reason}")
    return value
