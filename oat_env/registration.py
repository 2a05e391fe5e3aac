"""Factories behind the registered env ids (``gym.make`` / ``gym.make_vec`` kwargs land here).

Each id has a single-env factory (``entry_point``) and a vector one (``vector_entry_point``)
taking the same keyword arguments plus ``num_envs``.

Keyword arguments: every factory first refuses keywords its id does not take (``TypeError``
naming them, the likely intended keyword, e.g. ``model_name_or_path= -> reward_model=``, and
the accepted ones), before it loads any data or model; the option set of each id, the refusal
and the offline first-contact errors live in :mod:`oat_env.env_kwargs`. Held-out prompts
(``env.unwrapped.eval_prompts()``, counted by ``env.unwrapped.num_eval_prompts``) are decided at
construction: see :func:`_hub_prompts` for the dataset ids; procedural ids hold out
``eval_fraction`` of their problem space.

Gymnasium's own vectorizers
---------------------------
``gym.make_vec(id, num_envs=N)`` (``vectorization_mode`` ``None`` or ``"vector_entry_point"``)
builds the native vector env of DESIGN.md §2. ``vectorization_mode="sync"``
(:class:`gymnasium.vector.SyncVectorEnv`) and ``"async"`` (:class:`gymnasium.vector.AsyncVectorEnv`,
one worker process per sub-env, observations through shared memory: :mod:`oat_env.spaces`) work
for every id too: they run ``N`` independent single envs ``gym.make(id, **kwargs)`` (each behind
Gymnasium's env checker). They differ from the native vector env in exactly these ways:

1. **Autoreset.** Gymnasium's default is ``AutoresetMode.NEXT_STEP``: the step after a sub-env's
   episode ends only resets it -- its action is ignored, nothing is queried, the reward is 0,
   ``terminated`` is False and its infos hold only the new prompt's ``prompt_uid`` (and ``turn``
   for multi-turn). Single-turn episodes end every step, so every other ``step`` is such a dummy
   round, and an answering step has its feedback (``prob_a_wins``, ``correct``, ...) as top-level
   infos. ``vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}`` gives the
   native round structure: every step answers and returns the next prompts, the answered ones
   and their feedback in ``infos["final_obs"]``/``infos["final_info"]``.
2. **Seeding.** ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` (a list of ``N`` seeds is
   also accepted; the native env refuses lists), and each sub-env draws from its own prompt
   stream: sub-env ``i`` serves exactly what ``gym.make(id, **kwargs).reset(seed=s + i)`` serves.
   The native env draws all ``N`` prompts from one generator seeded with ``s`` (so the same seed
   gives other prompts), and on a finite dataset one shuffled epoch serves every prompt once
   across all sub-envs; ``N`` streams run ``N`` independent epochs, so one prompt can be served by
   several sub-envs in the same round.
3. **Query budget.** ``max_queries`` is per sub-env: ``N`` sub-envs may spend
   ``N * max_queries`` queries, and the counters are per sub-env (``envs.get_attr("num_queries")``
   is a tuple). The native env has one budget for the batch. The step that would overspend a
   sub-env's budget raises :class:`~oat_env.envs.base.QueryBudgetExhausted` from that sub-env; in
   async mode the workers that raised are shut down, so the vector env can only be closed.
4. **Batching.** One oracle call of batch size 1 per sub-env per answering step: ``N`` calls
   (sync: one after another; async: in parallel), each sub-env with its own oracle instance --
   ``N`` reward models in memory, plus one more that ``AsyncVectorEnv`` builds in the parent
   process to read the spaces. An oracle object passed as a keyword is copied into each worker;
   the parent's copy sees no calls. The native env makes ONE batched call of size ``N`` per step.
5. **Env API.** Only Gymnasium's ``VectorEnv`` API. The native env's own members --
   ``eval_prompts``, ``num_eval_prompts``, ``evaluate``, ``num_queries``, ``queries_remaining``,
   ``prompt_pool``/``serve_prompts`` (active prompt selection), ``current_prompts``,
   ``state_dict``/``load_state_dict``, ``last_oracle_metrics`` -- exist per sub-env only
   (``envs.call("eval_prompts", n)``, ``envs.get_attr("num_queries")``: tuples of ``N``
   results). The ``oat_agents`` loops need the native env.

Observations are a ``tuple`` of ``N`` prompt strings in every mode (multi-turn with
``observation_format="messages"``: ``N`` tuples of message dicts), except async mode with
``vector_kwargs={"copy": False}``, which returns a live view of the shared memory
(:class:`~oat_env.spaces.SharedTextBatch`); ``vector_kwargs={"shared_memory": False}`` pickles
observations through the pipes instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from oat_env.data.arithmetic import ArithmeticConfig, ArithmeticProblems
from oat_env.data.chat_data import (
    TLDR_DATASET,
    ULTRAFEEDBACK_DATASET,
    tldr_post,
    tldr_record,
    ultrafeedback_record_fn,
)
from oat_env.data.files import RowToRecord
from oat_env.data.hub import PromptDataUnavailableError, load_prompt_records
from oat_env.data.math_data import (
    COUNTDOWN_TEMPLATE,
    TEMPLATE_EXTRACTORS,
    CountdownProblems,
    gsm8k_record_fn,
    math_record_fn,
)
from oat_env.data.sources import ProceduralPrompts, PromptDataset
from oat_env.env_kwargs import (
    _ALL_ORACLE_OPTIONS,
    _ARITHMETIC_DUEL_OPTIONS,
    _ARITHMETIC_FIELDS,
    _ARITHMETIC_OPTIONS,
    _COUNTDOWN_GENERATOR_KEYS,
    _COUNTDOWN_OPTIONS,
    _MATH_OPTIONS,
    _MULTITURN_OPTIONS,
    _ORACLE_OPTIONS,
    _TLDR_OPTIONS,
    _ULTRAFEEDBACK_OPTIONS,
    _VERIFIABLE_OPTIONS,
    ORACLES,
    _reasoning_gym_options,
    _refuse_unknown,
    prompt_data_unavailable,
    reward_model_unavailable,
)
from oat_env.env_kwargs import offline_ways_out as offline_ways_out
from oat_env.envs.dueling import DuelingEnv, DuelingVectorEnv
from oat_env.envs.multiturn import MultiTurnMathEnv, MultiTurnMathVectorEnv
from oat_env.envs.verifiable import VerifiableEnv, VerifiableVectorEnv
from oat_env.oracles.adapters import MessagesRewardModelOracle, PromptDerivedReferences
from oat_env.oracles.countdown import CountdownVerifier
from oat_env.oracles.math import IntegerAnswerVerifier, MathVerifier
from oat_env.oracles.remote import RemoteOracle
from oat_env.oracles.reward_model import DEFAULT_REWARD_MODEL, RewardModelOracle
from oat_env.oracles.synthetic import ArithmeticUtilityOracle


def _arithmetic_prompts(kwargs: dict[str, Any]) -> ProceduralPrompts:
    """Pop the :class:`ArithmeticConfig` fields (and ``eval_fraction``) out of ``kwargs``."""
    config = ArithmeticConfig(**{k: kwargs.pop(k) for k in list(kwargs) if k in _ARITHMETIC_FIELDS})
    return ProceduralPrompts(ArithmeticProblems(config), eval_fraction=kwargs.pop("eval_fraction", 0.1), name="arithmetic")


def _arithmetic_verifier(kwargs: dict[str, Any]) -> IntegerAnswerVerifier:
    return IntegerAnswerVerifier(strict=kwargs.pop("strict", False))


def _arithmetic_oracle(kwargs: dict[str, Any]) -> ArithmeticUtilityOracle:
    return ArithmeticUtilityOracle(temperature=kwargs.pop("temperature", 0.1))


def _groupable(factory: Callable[..., Any]) -> Callable[..., Any]:
    """Give a single-turn vector factory the ``group_size`` keyword (:mod:`oat_env.envs.grouped`): checked
    before anything is built, then every prompt is served ``group_size`` times in a row."""
    import functools

    @functools.wraps(factory)
    def make(num_envs: int = 1, group_size: int = 1, **kwargs: Any) -> Any:
        from oat_env.envs.grouped import group_prompts

        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
        if isinstance(num_envs, int) and num_envs % group_size:
            raise ValueError(f"num_envs={num_envs} is not a multiple of group_size={group_size}: pass num_envs = "
                             f"prompts per round × group_size")
        return group_prompts(factory(num_envs=num_envs, **kwargs), group_size)

    return make


def make_arithmetic_env(**kwargs: Any) -> VerifiableEnv:
    """``oat/Arithmetic-v0``: :class:`ArithmeticConfig` fields, ``eval_fraction``, ``strict`` and
    :class:`~oat_env.envs.verifiable.VerifiableTask` options."""
    _refuse_unknown("oat/Arithmetic-v0", kwargs, _ARITHMETIC_OPTIONS | {"strict"} | _VERIFIABLE_OPTIONS)
    prompts = _arithmetic_prompts(kwargs)
    return VerifiableEnv(prompts, _arithmetic_verifier(kwargs), **kwargs)


@_groupable
def make_arithmetic_vector_env(num_envs: int = 1, **kwargs: Any) -> VerifiableVectorEnv:
    _refuse_unknown("oat/Arithmetic-v0", kwargs, _ARITHMETIC_OPTIONS | {"strict"} | _VERIFIABLE_OPTIONS)
    prompts = _arithmetic_prompts(kwargs)
    return VerifiableVectorEnv(prompts, _arithmetic_verifier(kwargs), num_envs=num_envs, **kwargs)


def make_arithmetic_duel_env(**kwargs: Any) -> DuelingEnv:
    """``oat/Arithmetic-Duel-v0``: :class:`ArithmeticConfig` fields, ``eval_fraction``, the oracle's
    Bradley--Terry ``temperature`` and :class:`~oat_env.envs.dueling.DuelingTask` options."""
    _refuse_unknown("oat/Arithmetic-Duel-v0", kwargs, _ARITHMETIC_DUEL_OPTIONS)
    prompts = _arithmetic_prompts(kwargs)
    return DuelingEnv(prompts, _arithmetic_oracle(kwargs), oracle_reference="answer", **kwargs)


def make_arithmetic_duel_vector_env(num_envs: int = 1, **kwargs: Any) -> DuelingVectorEnv:
    _refuse_unknown("oat/Arithmetic-Duel-v0", kwargs, _ARITHMETIC_DUEL_OPTIONS)
    prompts = _arithmetic_prompts(kwargs)
    return DuelingVectorEnv(prompts, _arithmetic_oracle(kwargs), num_envs=num_envs, oracle_reference="answer", **kwargs)


# -- hub math datasets ------------------------------------------------------------------------
GSM8K_DATASET = ("openai/gsm8k", "main")
# The standard MATH train/test split (12k train, the 500-problem "MATH-500" test set), with
# `problem`/`solution`/`answer` columns. Any dataset or local file with `problem`/`answer` works.
MATH_DATASET = ("joyheyueya/math500", None)


def _hub_prompts(
    kwargs: dict[str, Any],
    dataset: tuple[str, str | None],
    to_record: RowToRecord,
    name: str,
    split: str,
    eval_split: str,
    env_id: str | None = None,
) -> PromptDataset:
    """Pop ``prompt_data``, ``eval_prompt_data``, ``split``, ``eval_split`` and ``limit`` and load the
    training prompts (``dataset``, the hub default, unless ``prompt_data`` is given).

    Held-out prompts (decided here, at construction): ``eval_prompt_data`` when given (loaded on
    first use); else the hub default's ``eval_split`` when ``prompt_data`` is the default (loaded on
    first use); else (a local or custom ``prompt_data`` alone) none: ``num_eval_prompts == 0`` and
    ``eval_prompts`` raises ``ValueError`` naming ``eval_prompt_data=``. With ``env_id`` (the dueling
    ids), a hub dataset that cannot be loaded raises :class:`PromptDataUnavailableError` ending with
    :func:`offline_ways_out`.
    """
    prompt_data = kwargs.pop("prompt_data", None)
    eval_prompt_data = kwargs.pop("eval_prompt_data", None)
    split, eval_split = kwargs.pop("split", split), kwargs.pop("eval_split", eval_split)
    limit = kwargs.pop("limit", None)
    dataset_id, config = dataset

    def load(data: Any, which: str) -> list:
        try:
            return load_prompt_records(
                data, default_dataset=dataset_id, split=which, to_record=to_record, config_name=config, limit=limit
            )
        except PromptDataUnavailableError as err:
            if env_id is None:
                raise
            raise prompt_data_unavailable(err, env_id) from err

    records = load(prompt_data, split)
    if eval_prompt_data is not None:
        eval_records: Any = lambda: load(eval_prompt_data, eval_split)  # noqa: E731
    elif prompt_data is None:  # the hub default has a test split
        eval_records = lambda: load(None, eval_split)  # noqa: E731
    else:  # a local training file and no eval file: evaluation asks for eval_prompt_data
        eval_records = None
        # Say so now, not at the first evaluation (often minutes into a run): training works, evaluating cannot.
        warnings.warn(
            f"{env_id or name}: prompt_data= without eval_prompt_data= gives no held-out prompts "
            "(num_eval_prompts == 0): eval_prompts() and every evaluation of a training loop will fail. "
            "Pass eval_prompt_data= (a local file or a list of PromptRecord) for held-out evaluation.",
            UserWarning, stacklevel=4,
        )
    return PromptDataset(records, eval_records, name=name)


def _hub_math_prompts(
    kwargs: dict[str, Any], dataset: tuple[str, str | None], record_fn: Any, name: str
) -> tuple[PromptDataset, str]:
    """Pop ``template`` and the data options (:func:`_hub_prompts`, splits ``"train"``/``"test"``)."""
    template = kwargs.pop("template", "qwen_math")
    return _hub_prompts(kwargs, dataset, record_fn(template), name, "train", "test"), template


def _math_verifier(kwargs: dict[str, Any], template: str) -> MathVerifier:
    order = kwargs.pop("order", None) or TEMPLATE_EXTRACTORS.get(template)
    return MathVerifier(
        strict=kwargs.pop("strict", False),
        order=order,
        symmetric=kwargs.pop("symmetric", False),
        timeout_s=kwargs.pop("grading_timeout_s", 5.0),
        decimal_comma=kwargs.pop("decimal_comma", True),
        gold_precision=kwargs.pop("gold_precision", False),
    )


def _math_env(kwargs: dict[str, Any], dataset: tuple[str, str | None], record_fn: Any, name: str, num_envs=None):
    _refuse_unknown(f"oat/{'GSM8K' if name == 'gsm8k' else 'MATH'}-v0", kwargs, _MATH_OPTIONS | _VERIFIABLE_OPTIONS)
    prompts, template = _hub_math_prompts(kwargs, dataset, record_fn, name)
    verifier = _math_verifier(kwargs, template)
    if num_envs is None:
        return VerifiableEnv(prompts, verifier, **kwargs)
    return VerifiableVectorEnv(prompts, verifier, num_envs=num_envs, **kwargs)


def make_gsm8k_env(**kwargs: Any) -> VerifiableEnv:
    """``oat/GSM8K-v0``: ``prompt_data`` (hub id or local file with ``question``/``answer``; default
    ``openai/gsm8k``), ``eval_prompt_data``, ``split``/``eval_split``, ``limit``, ``template``
    (``plain``/``boxed``/``qwen_math``/``r1`` or a format string with ``{question}``), grading options
    (``strict``, ``order``, ``symmetric``, ``grading_timeout_s``, ``decimal_comma``, ``gold_precision``: see
    :class:`~oat_env.oracles.math.MathVerifier`) and the verifiable-task options."""
    return _math_env(kwargs, GSM8K_DATASET, gsm8k_record_fn, "gsm8k")


@_groupable
def make_gsm8k_vector_env(num_envs: int = 1, **kwargs: Any) -> VerifiableVectorEnv:
    return _math_env(kwargs, GSM8K_DATASET, gsm8k_record_fn, "gsm8k", num_envs)


def make_math_env(**kwargs: Any) -> VerifiableEnv:
    """``oat/MATH-v0``: as ``oat/GSM8K-v0`` with ``problem``/``answer`` rows (default hub dataset
    :data:`MATH_DATASET`)."""
    return _math_env(kwargs, MATH_DATASET, math_record_fn, "math")


@_groupable
def make_math_vector_env(num_envs: int = 1, **kwargs: Any) -> VerifiableVectorEnv:
    return _math_env(kwargs, MATH_DATASET, math_record_fn, "math", num_envs)


# -- Countdown --------------------------------------------------------------------------------
def _countdown(kwargs: dict[str, Any]) -> tuple[ProceduralPrompts, CountdownVerifier]:
    generator_kwargs = {k: kwargs.pop(k) for k in _COUNTDOWN_GENERATOR_KEYS if k in kwargs}
    problems = CountdownProblems(kwargs.pop("template", COUNTDOWN_TEMPLATE), **generator_kwargs)
    prompts = ProceduralPrompts(problems, eval_fraction=kwargs.pop("eval_fraction", 0.1), name="countdown")
    return prompts, CountdownVerifier(format_score=kwargs.pop("format_score", 0.0))


def make_countdown_env(**kwargs: Any) -> VerifiableEnv:
    """``oat/Countdown-v0``: ``num_numbers``, ``min_number``, ``max_number``, ``min_target``,
    ``max_target``, ``template``, ``eval_fraction``, ``format_score`` and the verifiable-task options."""
    _refuse_unknown("oat/Countdown-v0", kwargs, _COUNTDOWN_OPTIONS)
    prompts, verifier = _countdown(kwargs)
    return VerifiableEnv(prompts, verifier, **kwargs)


@_groupable
def make_countdown_vector_env(num_envs: int = 1, **kwargs: Any) -> VerifiableVectorEnv:
    _refuse_unknown("oat/Countdown-v0", kwargs, _COUNTDOWN_OPTIONS)
    prompts, verifier = _countdown(kwargs)
    return VerifiableVectorEnv(prompts, verifier, num_envs=num_envs, **kwargs)


# -- multi-turn math --------------------------------------------------------------------------
def _multiturn(kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``source="arithmetic"`` (default, offline), ``"gsm8k"`` or ``"math"``; the source's own options."""
    source = kwargs.pop("source", "arithmetic")
    datasets = {"gsm8k": (GSM8K_DATASET, gsm8k_record_fn), "math": (MATH_DATASET, math_record_fn)}
    if source != "arithmetic" and source not in datasets:
        raise ValueError(f"source must be one of ['arithmetic', 'gsm8k', 'math'], got {source!r}")
    source_options = _ARITHMETIC_OPTIONS | {"strict"} if source == "arithmetic" else _MATH_OPTIONS
    _refuse_unknown(
        f"oat/MathMultiTurn-v0 (source={source!r})", kwargs, source_options | _MULTITURN_OPTIONS | {"source"}
    )
    if source == "arithmetic":
        return _arithmetic_prompts(kwargs), _arithmetic_verifier(kwargs)
    dataset, record_fn = datasets[source]
    prompts, template = _hub_math_prompts(kwargs, dataset, record_fn, source)
    return prompts, _math_verifier(kwargs, template)


def make_multiturn_env(**kwargs: Any) -> MultiTurnMathEnv:
    """``oat/MathMultiTurn-v0``: ``source`` and its options (see the arithmetic and math ids) plus
    :class:`~oat_env.envs.multiturn.MultiTurnTask` options (``max_turns``, rewards, feedback,
    ``observation_format``)."""
    prompts, verifier = _multiturn(kwargs)
    return MultiTurnMathEnv(prompts, verifier, **kwargs)


def make_multiturn_vector_env(num_envs: int = 1, **kwargs: Any) -> MultiTurnMathVectorEnv:
    prompts, verifier = _multiturn(kwargs)
    return MultiTurnMathVectorEnv(prompts, verifier, num_envs=num_envs, **kwargs)


# -- preference envs on text data (TL;DR, UltraFeedback) -------------------------------------
def _duel_oracle(kwargs: dict[str, Any], env_id: str, messages: bool = False) -> Callable[[], Any]:
    """Pop and validate the oracle options; return the function that builds the oracle.

    Validation happens here, before any data loads; the returned builder loads the model.
    ``oracle_url`` (an ``oat-serve-oracle`` service) wins: a :class:`RemoteOracle` with
    ``oracle_kwargs`` as client options; the served oracle's own options live on the server.
    Otherwise ``oracle`` is ``"reward_model"`` (default), ``"embedding"``, ``"judge"`` or an oracle
    object; ``oracle_kwargs`` go to its constructor next to the named options of that kind.
    A reward model that cannot be loaded raises ``OSError`` ending with :func:`offline_ways_out`.
    """
    oracle = kwargs.pop("oracle", None)
    url = kwargs.pop("oracle_url", None)
    extra = dict(kwargs.pop("oracle_kwargs", None) or {})
    options = {k: kwargs.pop(k) for k in _ALL_ORACLE_OPTIONS if k in kwargs}
    if url is not None:
        if oracle is not None or options:
            given = (["oracle"] if oracle is not None else []) + sorted(options)
            raise ValueError(
                f"oracle_url={url!r} selects the served oracle; {given} configure an in-process oracle and "
                "cannot be combined with it (set them on the server: oat-serve-oracle --help)"
            )
        return lambda: RemoteOracle(url, **extra)
    if oracle is None:
        oracle = "reward_model"
    if not isinstance(oracle, str):  # an oracle object: DuelingTask wraps reward-only ones itself
        if options.keys() - {"bt_temperature"} or extra:
            raise ValueError(f"options {sorted(options) + sorted(extra)} only apply to oracle names {ORACLES}")
        if "bt_temperature" in options:
            kwargs["bt_temperature"] = options["bt_temperature"]
        return lambda: oracle
    if oracle not in ORACLES:
        raise ValueError(f"oracle must be one of {ORACLES} (or an oracle object), got {oracle!r}")
    unknown = sorted(options.keys() - set(_ORACLE_OPTIONS[oracle]))
    if unknown:
        raise ValueError(f"options {unknown} do not apply to oracle={oracle!r}; it takes {_ORACLE_OPTIONS[oracle]}")
    if "bt_temperature" in options:  # these oracles have their own Bradley-Terry compare()
        options["temperature"] = options.pop("bt_temperature")
    if oracle == "reward_model":
        options["model_name_or_path"] = options.pop("reward_model", DEFAULT_REWARD_MODEL)
        cls = MessagesRewardModelOracle if messages else RewardModelOracle

        def build_reward_model() -> RewardModelOracle:
            try:
                return cls(**options, **extra)
            except OSError as err:  # the model or tokenizer could not be loaded
                raise reward_model_unavailable(err, options["model_name_or_path"], env_id) from err

        return build_reward_model
    if oracle == "embedding":

        def build_embedding() -> Any:
            from oat_env.oracles.embedding import EmbeddingSimilarityOracle

            return EmbeddingSimilarityOracle(model_name_or_path=options.pop("embedding_model", None), **options, **extra)

        return build_embedding

    def build_judge() -> Any:
        from oat_env.oracles.judge import JudgeOracle

        return JudgeOracle(model=options.pop("judge_model", None), **options, **extra)

    return build_judge


TLDR_ORACLE_REFERENCES = ("post", "summary")


def _tldr(kwargs: dict[str, Any]) -> tuple[PromptDataset, Any]:
    env_id = "oat/TLDR-Duel-v0"
    _refuse_unknown(env_id, kwargs, _TLDR_OPTIONS)
    reference = kwargs.pop("oracle_reference", "post")
    if reference not in TLDR_ORACLE_REFERENCES:
        raise ValueError(f"oracle_reference must be one of {TLDR_ORACLE_REFERENCES}, got {reference!r}")
    build_oracle = _duel_oracle(kwargs, env_id)
    prompts = _hub_prompts(kwargs, TLDR_DATASET, tldr_record, "tldr", "train", "test", env_id)
    oracle = build_oracle()
    if reference == "post":
        oracle = PromptDerivedReferences(oracle, tldr_post, kwargs.pop("bt_temperature", 1.0))
    return prompts, oracle


def make_tldr_duel_env(**kwargs: Any) -> DuelingEnv:
    """``oat/TLDR-Duel-v0``: summarise a Reddit post; the agent proposes two summaries.

    Data: ``prompt_data`` (hub id or local .jsonl/.json/.parquet/.csv; default ``trl-lib/tldr``),
    ``eval_prompt_data``, ``split``/``eval_split`` (``"train"``/``"test"``), ``limit``. Rows have a
    ``prompt`` or ``post`` (+ ``title``, ``subreddit``) and a human summary (``reference_summary``,
    ``summary`` or ``completion``), the reference for ``env.unwrapped.evaluate``. Held-out prompts:
    ``eval_prompt_data``, else the default's ``"test"`` split, else none (a local ``prompt_data``
    alone: ``env.unwrapped.num_eval_prompts == 0``, ``eval_prompts`` raises; see
    :func:`_hub_prompts`).

    Oracle: ``oracle="reward_model"`` (default; ``reward_model`` id or path, default
    :data:`~oat_env.oracles.reward_model.DEFAULT_REWARD_MODEL`, ``device``, ``dtype``,
    ``batch_size``, ``max_length``, ``bt_temperature``), ``"embedding"`` (``embedding_model``,
    ``device``, ``batch_size``, ``bt_temperature``), ``"judge"`` (``judge_model``), or an oracle
    object; ``oracle_kwargs`` go to the oracle's constructor. ``oracle_url`` uses an
    ``oat-serve-oracle`` service instead (``oracle_kwargs`` then configure the client).

    ``oracle_reference``: the reference handed to reference-based oracles (embedding, judge
    templates with ``{reference}``): ``"post"`` (default; parsed out of the prompt, so the score
    is similarity to the source post) or ``"summary"`` (the human summary; it then scores itself
    perfectly, so win rates against it are degenerate). Reward models ignore references.

    Plus :class:`~oat_env.envs.dueling.DuelingTask` options (``label_mode``, ``flip_prob``,
    ``max_queries``, ...). Order of work: unknown keywords (``TypeError``) and bad oracle options
    (``ValueError``) are refused first, then the prompts load, then the oracle; a prompt set or
    reward model that needs the unreachable hub fails with :func:`offline_ways_out` in its message.
    """
    prompts, oracle = _tldr(kwargs)
    return DuelingEnv(prompts, oracle, **kwargs)


def make_tldr_duel_vector_env(num_envs: int = 1, **kwargs: Any) -> DuelingVectorEnv:
    prompts, oracle = _tldr(kwargs)
    return DuelingVectorEnv(prompts, oracle, num_envs=num_envs, **kwargs)


def _ultrafeedback(kwargs: dict[str, Any]) -> tuple[PromptDataset, Any]:
    env_id = "oat/UltraFeedback-Duel-v0"
    _refuse_unknown(env_id, kwargs, _ULTRAFEEDBACK_OPTIONS)
    chat_format = kwargs.pop("chat_format", "text")
    to_record = ultrafeedback_record_fn(chat_format)
    build_oracle = _duel_oracle(kwargs, env_id, messages=chat_format == "messages")
    prompts = _hub_prompts(
        kwargs, ULTRAFEEDBACK_DATASET, to_record, "ultrafeedback", "train_prefs", "test_prefs", env_id
    )
    return prompts, build_oracle()


def make_ultrafeedback_duel_env(**kwargs: Any) -> DuelingEnv:
    """``oat/UltraFeedback-Duel-v0``: answer a chat prompt; the agent proposes two responses.

    Data: ``prompt_data`` (default ``HuggingFaceH4/ultrafeedback_binarized``, splits
    ``"train_prefs"``/``"test_prefs"``; or a local file with ``prompt``/``conversations`` and
    ``chosen``/``chosen_response``), ``eval_prompt_data``, ``split``/``eval_split``, ``limit``.
    The reference (win rates) is the chosen response. Held-out prompts as ``oat/TLDR-Duel-v0``.

    ``chat_format``: ``"text"`` (default; the user message, or a ``System:/User:/Assistant:``
    transcript for longer conversations) or ``"messages"`` (a JSON message list, see
    :func:`~oat_env.data.chat_data.decode_messages`). The observation is always a string; agents
    apply their own chat template. The in-process reward model applies *its* tokenizer's chat
    template to (conversation, response); a served oracle (``oracle_url``) and the judge receive
    the observation string as the prompt (under ``"messages"``, the JSON list).

    Oracle options, order of work and offline errors as ``oat/TLDR-Duel-v0`` (references passed to
    reference-based oracles are the chosen responses), plus
    :class:`~oat_env.envs.dueling.DuelingTask` options.
    """
    prompts, oracle = _ultrafeedback(kwargs)
    return DuelingEnv(prompts, oracle, **kwargs)


def make_ultrafeedback_duel_vector_env(num_envs: int = 1, **kwargs: Any) -> DuelingVectorEnv:
    prompts, oracle = _ultrafeedback(kwargs)
    return DuelingVectorEnv(prompts, oracle, num_envs=num_envs, **kwargs)


# id -> (single factory, vector factory). oat_env/__init__.py registers these with gymnasium.
ENV_FACTORIES: dict[str, tuple[str, str]] = {
    "oat/Arithmetic-v0": ("make_arithmetic_env", "make_arithmetic_vector_env"),
    "oat/Arithmetic-Duel-v0": ("make_arithmetic_duel_env", "make_arithmetic_duel_vector_env"),
    "oat/GSM8K-v0": ("make_gsm8k_env", "make_gsm8k_vector_env"),
    "oat/MATH-v0": ("make_math_env", "make_math_vector_env"),
    "oat/Countdown-v0": ("make_countdown_env", "make_countdown_vector_env"),
    "oat/MathMultiTurn-v0": ("make_multiturn_env", "make_multiturn_vector_env"),
    "oat/TLDR-Duel-v0": ("make_tldr_duel_env", "make_tldr_duel_vector_env"),
    "oat/UltraFeedback-Duel-v0": ("make_ultrafeedback_duel_env", "make_ultrafeedback_duel_vector_env"),
    "oat/ReasoningGym-v0": ("make_reasoning_gym_env", "make_reasoning_gym_vector_env"),
}


def make_reasoning_gym_env(**kwargs: Any) -> Any:
    """``oat/ReasoningGym-v0`` (needs ``pip install reasoning-gym``): see :mod:`oat_env.integrations.reasoning_gym`."""
    from oat_env.integrations.reasoning_gym import make_reasoning_gym_env as make

    _refuse_unknown("oat/ReasoningGym-v0", kwargs, _reasoning_gym_options())
    return make(**kwargs)


@_groupable
def make_reasoning_gym_vector_env(num_envs: int = 1, **kwargs: Any) -> Any:
    from oat_env.integrations.reasoning_gym import make_reasoning_gym_vector_env as make

    _refuse_unknown("oat/ReasoningGym-v0", kwargs, _reasoning_gym_options())
    return make(num_envs=num_envs, **kwargs)
