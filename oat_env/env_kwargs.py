"""First contact with a registered env id: the keyword arguments each id takes, the refusal of the
others, and the errors that tell an offline user the ways out.

Every factory in :mod:`oat_env.registration` starts with :func:`_refuse_unknown` over its id's
option set from here (``TypeError`` naming the unknown keywords, the likely intended one, e.g.
``model_name_or_path= -> reward_model=``, and the accepted ones), before it loads any data or
model. A hub-backed dueling id whose prompts or reward model cannot be loaded fails with a message
ending in :func:`offline_ways_out` (:func:`prompt_data_unavailable`, :func:`reward_model_unavailable`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Iterable, Mapping
from typing import Any

from oat_env.data.arithmetic import ArithmeticConfig
from oat_env.data.hub import PromptDataUnavailableError
from oat_env.envs.dueling import DuelingTask
from oat_env.envs.multiturn import MultiTurnTask
from oat_env.envs.verifiable import VerifiableTask


# -- refusing unknown keywords -----------------------------------------------------------------------
def _keyword_options(task_cls: type) -> frozenset[str]:
    """The keyword-only options of a task constructor (what the env classes pass through)."""
    params = inspect.signature(task_cls.__init__).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


# Names people reach for that mean another keyword of these factories.
_KWARG_ALIASES = {
    "model_name_or_path": "reward_model",
    "reward_model_name_or_path": "reward_model",
    "rm": "reward_model",
    "embedding_model_name_or_path": "embedding_model",
    "data": "prompt_data",
    "dataset": "prompt_data",
    "eval_data": "eval_prompt_data",
    "eval_dataset": "eval_prompt_data",
}


def _refuse_unknown(env_id: str, kwargs: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """Raise ``TypeError`` naming every keyword of ``kwargs`` that ``env_id`` does not take (with the
    likely intended one), before the caller loads any data or model."""
    accepted = sorted(set(accepted))
    unknown = sorted(set(kwargs) - set(accepted))
    if not unknown:
        return
    groupable = ("oat/Arithmetic-v0", "oat/GSM8K-v0", "oat/MATH-v0", "oat/Countdown-v0", "oat/ReasoningGym-v0")
    if "group_size" in unknown and env_id in groupable:  # a single env: gym.make, or make_vec's sync/async modes
        raise TypeError(
            f"group_size= is an option of {env_id}'s own vector env: gym.make_vec({env_id!r}, num_envs=B*G, "
            "group_size=G) with the default vectorization_mode; gym.make and vectorization_mode='sync'/'async' "
            "build single envs, which serve one prompt each and cannot be grouped; nothing was loaded"
        )
    if "group_size" in unknown:
        raise TypeError(
            f"{env_id} takes no group_size=: grouped prompt streams (each prompt served G times in a row) are for "
            "the single-turn verifiable ids (oat/Arithmetic-v0, oat/GSM8K-v0, oat/MATH-v0, oat/Countdown-v0, "
            "oat/ReasoningGym-v0), through gym.make_vec(id, num_envs=B*G, group_size=G); nothing was loaded"
        )
    hints = []
    for name in unknown:
        guess = _KWARG_ALIASES.get(name)
        if guess not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            guess = close[0] if close else None
        if guess is not None:
            hints.append(f"{name}= -> {guess}=")
    raise TypeError(
        f"{env_id} got unknown keyword argument(s) {unknown}"
        + (f" (did you mean {', '.join(hints)}?)" if hints else "")
        + f"; nothing was loaded. It accepts: {', '.join(accepted)}"
    )


# -- the option set of each id ----------------------------------------------------------------------
_ARITHMETIC_FIELDS = {f.name for f in dataclasses.fields(ArithmeticConfig)}
_VERIFIABLE_OPTIONS = _keyword_options(VerifiableTask)
_DUELING_OPTIONS = _keyword_options(DuelingTask)
_MULTITURN_OPTIONS = _keyword_options(MultiTurnTask)
_ARITHMETIC_OPTIONS = _ARITHMETIC_FIELDS | {"eval_fraction"}
# Data options of the hub-backed ids (see registration._hub_prompts).
_HUB_DATA_OPTIONS = frozenset({"prompt_data", "eval_prompt_data", "split", "eval_split", "limit"})
_MATH_OPTIONS = _HUB_DATA_OPTIONS | {"template", "strict", "order", "symmetric", "grading_timeout_s", "decimal_comma",
                                     "gold_precision"}

# The env fixes oracle_reference="answer" (the utility oracle needs the gold answer).
_ARITHMETIC_DUEL_OPTIONS = _ARITHMETIC_OPTIONS | {"temperature"} | (_DUELING_OPTIONS - {"oracle_reference"})

_COUNTDOWN_GENERATOR_KEYS = ("num_numbers", "min_number", "max_number", "min_target", "max_target")
_COUNTDOWN_OPTIONS = (
    frozenset(_COUNTDOWN_GENERATOR_KEYS) | {"template", "eval_fraction", "format_score"} | _VERIFIABLE_OPTIONS
)

# Preference envs on text data (TL;DR, UltraFeedback).
ORACLES = ("reward_model", "embedding", "judge")
# In-process oracle options accepted per oracle kind (everything else goes through oracle_kwargs).
_ORACLE_OPTIONS = {
    "reward_model": ("reward_model", "device", "dtype", "batch_size", "max_length", "bt_temperature"),
    "embedding": ("embedding_model", "device", "batch_size", "bt_temperature"),
    "judge": ("judge_model",),
}
_ALL_ORACLE_OPTIONS = sorted({k for keys in _ORACLE_OPTIONS.values() for k in keys})
_DUEL_ORACLE_OPTIONS = frozenset({"oracle", "oracle_url", "oracle_kwargs", *_ALL_ORACLE_OPTIONS})
_TLDR_OPTIONS = _HUB_DATA_OPTIONS | _DUEL_ORACLE_OPTIONS | _DUELING_OPTIONS | {"oracle_reference"}
_ULTRAFEEDBACK_OPTIONS = _HUB_DATA_OPTIONS | _DUEL_ORACLE_OPTIONS | _DUELING_OPTIONS | {"chat_format"}


def _reasoning_gym_options() -> frozenset[str]:
    from oat_env.integrations import reasoning_gym

    task_options = _keyword_options(reasoning_gym.ReasoningGymTask) | _VERIFIABLE_OPTIONS
    return frozenset(reasoning_gym._DATA_KEYS) | {"template", "extractor"} | task_options


# -- first-contact errors of the hub-backed dueling ids ---------------------------------------------
def offline_ways_out(env_id: str) -> str:
    """The sentence every first-contact error of a hub-backed dueling env ends with: how to run offline."""
    return (
        f"Ways out for {env_id} without the Hugging Face hub: prompt_data='prompts.jsonl' (local prompts: "
        ".jsonl/.json/.parquet/.csv or a list of PromptRecord; add eval_prompt_data= for held-out prompts) "
        "together with an oracle that needs no hub: oracle='embedding' (the bundled offline "
        "reference-similarity oracle), reward_model='path/to/reward_model_dir' (a local reward model "
        "directory; this env's keyword is reward_model=, not model_name_or_path=) or "
        "oracle_url='http://host:port' (an oat-serve-oracle service)."
    )


def prompt_data_unavailable(err: PromptDataUnavailableError, env_id: str) -> PromptDataUnavailableError:
    """The error to raise (``from err``) when ``env_id``'s prompt data cannot be loaded."""
    return PromptDataUnavailableError(f"{err} {offline_ways_out(env_id)}")


def reward_model_unavailable(err: OSError, model: Any, env_id: str) -> OSError:
    """The error to raise (``from err``) when ``env_id``'s reward model or tokenizer cannot be loaded."""
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    cause = err.__cause__ if err.__cause__ is not None else err
    return OSError(
        f"could not load reward model {model!r} for {env_id}"
        + (" (HF_HUB_OFFLINE is set)" if offline else "")
        + f": {type(cause).__name__}: {str(cause).strip().rstrip('.')}. {offline_ways_out(env_id)}"
    )
