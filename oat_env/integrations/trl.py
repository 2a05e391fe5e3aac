"""oat envs inside TRL trainers: prompt datasets, per-item reward functions, tool environments.

Every adapter is built from an env id and the env's own keyword arguments (exactly what
``gym.make(env_id, **env_kwargs)`` takes: difficulty, ``template``, ``strict``, ``order``,
``correct_reward``, ``unformatted_reward``, ``max_turns``, ...), and builds that env, so TRL
sees the env's prompts, gold answers, answer extraction and reward shaping, not a re-implementation.
Build the dataset and the reward (or environment factory) with the *same* ``env_kwargs``.

:func:`prompt_dataset` and :func:`reward_function` live in this module; :func:`environment_factory`
(with :class:`MultiTurnEnvFactory` and :class:`MultiTurnToolEnv`) lives in
:mod:`oat_env.integrations.trl_tools` and is re-exported here; the prompt/completion conversions they
share are in :mod:`oat_env.integrations.trl_common`.

:func:`prompt_dataset` ``(env_id, n=None, split="train", *, seed=0, conversational=None, **env_kwargs)``
    A ``datasets.Dataset`` with one row per prompt and the columns

    * ``prompt`` -- the env's observation (``str``), or in TRL's conversational form, a list of
      ``{"role", "content"}`` messages: decoded from the JSON list when the env was made with
      ``chat_format="messages"`` (``oat/UltraFeedback-Duel-v0``), else one user message holding the
      observation. ``conversational=None`` (default) follows the env: conversational iff
      ``chat_format="messages"`` or ``observation_format="messages"`` (``oat/MathMultiTurn-v0``);
      ``True``/``False`` force it (``False``: the observation string verbatim).
    * ``answer`` -- the gold answer (``str``; ``None`` where the env has none);
    * ``prompt_uid`` -- the env's ``prompt_uid`` (``str`` or ``None``);
    * ``reference`` -- dueling envs only: the reference response;
    * ``prompt_text`` -- only when ``prompt`` is conversational: the observation string the
      verifier grades against.

    ``split="train"``: the first ``n`` prompts of the env's training stream after a reset with
    ``seed`` -- the prompts ``gym.make_vec(env_id, num_envs=n).reset(seed=seed)`` serves, which are
    also those of ``reset(seed=seed)`` followed by ``n - 1`` plain ``reset()`` calls of a single env.
    ``n`` is required for procedural envs; for a dataset env ``n=None`` means one epoch (every
    training prompt once, in the stream's seeded order; a larger ``n`` continues into the next
    epochs). ``split="eval"``: the held-out prompts ``env.eval_prompts(n, seed)`` gives (``n=None``:
    every held-out prompt where the source can list them, else the env's ``ValueError`` asks for ``n``).

    Gold answers and references are in the dataset because TRL passes dataset columns to the
    reward function; the env's infos still never contain them.

:func:`reward_function` ``(env_id, *, name=None, **env_kwargs)`` -> :class:`EnvReward`
    A TRL reward function ``(prompts, completions, **columns) -> list[float]``, called by TRL as
    ``f(prompts=..., completions=..., completion_ids=..., answer=..., prompt_uid=..., ...,
    trainer_state=..., log_metric=...)`` (every dataset column but ``prompt`` as a keyword list
    aligned with ``completions``; unknown keywords are ignored). A completion is a ``str`` or a list
    of message dicts; its text is the content of its last ``assistant`` message (text parts joined).

    * Verifiable envs (``oat/Arithmetic-v0``, ``oat/GSM8K-v0``, ``oat/MATH-v0``, ``oat/Countdown-v0``):
      ``rewards[i]`` is what ``env.step(completion_text[i])`` returns on the prompt with gold
      ``answer[i]``: the env's own verifier (extractor order from ``template``/``order``/``strict``)
      and reward map (``correct_reward``, ``incorrect_reward``, ``unformatted_reward``; a verifier
      without a ``correct`` field gives its score). The batch is graded in ONE ``verifier.reward``
      call and costs ``len(completions)`` queries of the env's ``max_queries`` budget, exactly as a
      vector ``step`` (an exhausted budget raises ``QueryBudgetExhausted`` before grading). Needs
      the ``answer`` column.
    * Dueling envs (``oat/Arithmetic-Duel-v0``, ...) with an oracle that has a scalar score (latent
      utility, reward model, embedding similarity): ``rewards[i]`` is that score ``s(x_i, y_i)`` from
      ONE ``oracle.reward`` call (references: the ``answer`` or ``reference`` column, as the env's
      ``oracle_reference`` says). Their ``compare`` is Bradley--Terry over ``s``, so the env's
      ``label_mode="threshold"`` label of a pair ``(a, b)`` is ``s(a) > s(b)``: the pair TRL's
      ``OnlineDPOTrainer`` ranks by these rewards (it keeps ``a`` on a tie, the env gives ties to
      ``b``). Scores cost no queries. Oracles without a scalar score (LLM judges) raise ``TypeError``.
    * Multi-turn envs raise ``TypeError``: use :func:`environment_factory`.

    The object has ``__name__`` (default: the env id with ``/`` replaced by ``_``; TRL logs rewards
    under it), ``verifier_calls`` (verifier/oracle calls made), ``items_scored``, ``last_info`` (the
    per-item info of the last call, e.g. ``correct``/``formatted``/``extracted_answer``), ``env`` and
    ``close()``. When TRL passes ``log_metric``, verifiable rewards also log ``{name}/accuracy`` and
    ``{name}/formatted`` (fractions of the batch).

:func:`environment_factory` ``(env_id, *, seed=0, python_tool=False, python_tool_kwargs=None, **env_kwargs)``
-> :class:`MultiTurnEnvFactory`
    For ``oat/MathMultiTurn-v0``: the contract of TRL 1.16's ``GRPOTrainer(environment_factory=...)``
    (experimental in TRL; needs transformers >= 5.2): calling the factory returns a new
    :class:`MultiTurnToolEnv` (TRL makes one per concurrent rollout and reuses them across batches),
    all sharing the factory's env (verifier, reward options, query budget). The instance has
    ``reset(**row) -> str | None``, ONE tool ``submit_answer(answer: str) -> str`` and
    ``get_reward() -> float``:

    * ``reset(**row)`` (TRL passes the dataset row): with an ``answer`` column (a
      :func:`prompt_dataset` row, conversational) the episode is that problem and ``None`` is
      returned (the prompt is already in the conversation); without a dataset (TRL then uses empty
      placeholder prompts) the env draws the next problem from its training stream, seeded with
      ``seed`` once per factory, and returns the prompt, which TRL appends to the user message.
    * ``submit_answer(answer)`` is one attempt: ``answer`` is graded exactly as a response to the
      env's ``step`` (one verifier call; the env's extraction, so ``"42"`` or ``"\\boxed{42}"``), and
      the tool returns ``"Correct."``, the env's own feedback text while attempts remain, or
      ``"Incorrect. No attempts left."``; after the episode ended it grades nothing and says so.
    * ``get_reward()`` is the episode's return: the sum of the env's step rewards
      (``success_reward - turn_penalty * (t - 1)``, ``per_turn_reward``, ``failure_reward``); a rollout
      that ends before the episode does (no correct answer, fewer than ``max_turns`` attempts) is a
      failure and adds ``failure_reward``.

    * With ``python_tool=True`` the instances are :class:`PythonToolEnv`: a second tool
      ``run_python(code: str) -> str`` runs the code in :func:`oat_env.sandbox.run_python` (fresh
      sandbox per call, the limits of :class:`~oat_env.envs.tools.PythonToolWrapper`, set with
      ``python_tool_kwargs``: ``max_tool_calls`` per episode, ``timeout_s``, ``memory_mb``,
      ``max_output_chars``, ``sandbox_kwargs``) and returns its output as the wrapper would show it; it
      grades nothing and costs no verifier call. Code that cannot run (NUL, lone surrogates) returns
      the reason, never raises; past ``max_tool_calls`` it returns a refusal.

    The factory counts ``verifier_calls`` and ``tool_calls`` over all its instances and has ``env``
    and ``close()``.
    TRL needs a tokenizer whose chat template renders tool calls and a response parser
    (``trl.chat_template_utils.add_response_schema``); see TRL's GRPO docs.

Pairwise judges: TRL 1.16 has no judges (``BasePairwiseJudge`` is gone and ``OnlineDPOTrainer`` takes
only ``reward_funcs``), so dueling envs plug into ``OnlineDPOTrainer`` through :func:`reward_function`.

Nothing here imports torch, TRL or ``oat_agents``; ``datasets`` is imported by :func:`prompt_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium.utils import seeding

from oat_env.data.records import PromptRecord
from oat_env.data.sources import ProceduralPrompts
from oat_env.envs.dueling import DuelingTask
from oat_env.envs.multiturn import MultiTurnTask
from oat_env.integrations.trl_common import (
    Completion,
    Prompt,
    _completion_text,
    _env_is_conversational,
    _json_messages,
    _make_env,
    _optional_str,
    _prompt_text,
    _to_trl_prompt,
)
from oat_env.integrations.trl_tools import (
    MultiTurnEnvFactory,
    MultiTurnToolEnv,
    PythonToolEnv,
    environment_factory,
)
from oat_env.oracles.base import BradleyTerryPreference, OracleResult

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "EnvReward",
    "MultiTurnEnvFactory",
    "MultiTurnToolEnv",
    "PythonToolEnv",
    "environment_factory",
    "prompt_dataset",
    "reward_function",
]


# -- helpers ---------------------------------------------------------------------------------------
def _column(name: str, values: Any, n: int) -> list:
    """``values`` (a list, array or ``datasets`` column) as a list of ``n`` items."""
    if isinstance(values, (str, bytes, Mapping)) or not (hasattr(values, "__len__") and hasattr(values, "__iter__")):
        raise TypeError(f"column {name!r} must be a list of {n} values, got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return list(values)


def _scalar_scorer(oracle: Any) -> tuple[Callable[..., OracleResult], Callable[[str], Any] | None]:
    """``(reward, derive)`` of a dueling env's oracle: the scalar score behind its preferences and, for
    an oracle that replaces the references (``PromptDerivedReferences``), the reference rule."""
    derive = None
    if callable(getattr(oracle, "derive", None)) and getattr(oracle, "oracle", None) is not None:
        derive, oracle = oracle.derive, oracle.oracle
    if isinstance(oracle, BradleyTerryPreference):
        oracle = oracle.reward_oracle
    if not callable(getattr(oracle, "reward", None)):
        raise TypeError(
            f"the env's oracle ({type(oracle).__name__}) only compares pairs and has no scalar score, so it "
            "cannot be a TRL reward function (TRL 1.16's OnlineDPOTrainer takes reward functions, no judges)"
        )
    return oracle.reward, derive


# -- prompt_dataset --------------------------------------------------------------------------------
def prompt_dataset(
    env_id: str,
    n: int | None = None,
    split: str = "train",
    *,
    seed: int = 0,
    conversational: bool | None = None,
    **env_kwargs: Any,
) -> Dataset:
    """The env's prompts as a TRL dataset (columns and draw order: see the module docstring).

    Args:
        env_id: a registered ``oat/*`` id.
        n: number of prompts (``None``: one epoch of a dataset env's training prompts, or every
            held-out prompt where the source can list them).
        split: ``"train"`` (the env's seeded training stream) or ``"eval"`` (its held-out prompts).
        seed: the reset seed of the training stream / the ``seed`` of ``eval_prompts``.
        conversational: ``None`` follows the env's chat format; ``True``/``False`` force it.
        **env_kwargs: the env's keyword arguments (as for ``gym.make``).
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    from datasets import Dataset

    env, task = _make_env(env_id, dict(env_kwargs))
    try:
        if split == "eval":
            records = task.eval_records(None if n is None else int(n), seed=int(seed))
        else:
            if n is None:
                if isinstance(task.source, ProceduralPrompts):
                    raise ValueError(
                        f"{env_id} generates its prompts procedurally: pass n, the number of training prompts"
                    )
                n = len(task.source)
            rng, _ = seeding.np_random(int(seed))  # what reset(seed=seed) gives the env
            task.stream.reset()
            records = task.next_prompts(int(n), rng)
    finally:
        env.close()
    if conversational is None:
        conversational = _env_is_conversational(env_kwargs, task)
    json_messages = _json_messages(env_kwargs)
    columns: dict[str, list] = {
        "prompt": [_to_trl_prompt(r.prompt, conversational, json_messages) for r in records],
        "answer": [r.answer for r in records],
        "prompt_uid": [r.uid for r in records],
    }
    if isinstance(task, DuelingTask):
        columns["reference"] = [r.reference for r in records]
    if conversational:
        columns["prompt_text"] = [r.prompt for r in records]
    return Dataset.from_dict(columns)


# -- reward_function -------------------------------------------------------------------------------
class EnvReward:
    """A TRL reward function over an oat env's verifier or oracle score (see the module docstring).

    Build it with :func:`reward_function`. Attributes: ``__name__``, ``env_id``, ``env`` (the env it
    grades with) and its ``task``, ``verifier_calls``, ``items_scored``, ``last_info``.
    """

    def __init__(self, env_id: str, *, name: str | None = None, **env_kwargs: Any):
        self.env_id = env_id
        self.env, self.task = _make_env(env_id, dict(env_kwargs))
        if isinstance(self.task, MultiTurnTask):
            self.env.close()
            raise TypeError(
                f"{env_id} is multi-turn (an episode is several attempts with feedback): use "
                "environment_factory(...) with GRPOTrainer(environment_factory=...) instead of a reward function"
            )
        self.__name__ = name if name is not None else env_id.replace("/", "_")
        self._json_messages = _json_messages(env_kwargs)
        self._rng = np.random.default_rng(0)  # verifiable feedback draws nothing; the API wants a generator
        self._scorer: Callable[..., OracleResult] | None = None
        self._derive: Callable[[str], Any] | None = None
        if isinstance(self.task, DuelingTask):
            try:
                self._scorer, self._derive = _scalar_scorer(self.task.oracle)
            except TypeError:
                self.env.close()
                raise
        self.verifier_calls = 0
        self.items_scored = 0
        self.last_info: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"EnvReward({self.env_id!r}, name={self.__name__!r})"

    def __call__(
        self,
        prompts: Sequence[Prompt],
        completions: Sequence[Completion],
        answer: Sequence[Any] | None = None,
        prompt_text: Sequence[str] | None = None,
        prompt_uid: Sequence[Any] | None = None,
        reference: Sequence[Any] | None = None,
        log_metric: Callable[[str, float], Any] | None = None,
        **_: Any,
    ) -> list[float]:
        """One reward per completion, from one batched verifier (or oracle) call."""
        completions = _column("completions", completions, len(completions))
        n = len(completions)
        prompts = _column("prompts", prompts, n)
        if n == 0:
            return []
        responses = [_completion_text(c, i) for i, c in enumerate(completions)]
        if prompt_text is not None:
            texts = [str(t) for t in _column("prompt_text", prompt_text, n)]
        else:
            texts = [_prompt_text(p, self._json_messages, i) for i, p in enumerate(prompts)]
        uids = [None] * n if prompt_uid is None else _column("prompt_uid", prompt_uid, n)
        answers = None if answer is None else _column("answer", answer, n)
        if self._scorer is not None:
            rewards = self._score(texts, responses, answers, reference, n)
        else:
            rewards = self._verify(texts, responses, answers, uids, n, log_metric)
        self.verifier_calls += 1
        self.items_scored += n
        return [float(r) for r in rewards]

    def _verify(self, texts, responses, answers, uids, n, log_metric) -> np.ndarray:
        if answers is None:
            raise ValueError(
                f"reward function {self.__name__!r} needs the gold answers: a dataset column 'answer' "
                f"(prompt_dataset({self.env_id!r}, ...) has it; TRL passes dataset columns as keyword arguments)"
            )
        records = [
            PromptRecord(prompt=t, answer=_optional_str(a), uid=_optional_str(u))
            for t, a, u in zip(texts, answers, uids, strict=True)
        ]
        action = self.task.parse_batch_action(responses, n)
        fb = self.task.spend_and_feedback(records, action, self._rng)
        self.last_info = fb.info
        if callable(log_metric):
            for key, metric in (("correct", "accuracy"), ("formatted", "formatted")):
                if key in fb.info:
                    log_metric(f"{self.__name__}/{metric}", float(np.mean(np.asarray(fb.info[key], dtype=bool))))
        return fb.rewards

    def _score(self, texts, responses, answers, reference, n) -> np.ndarray:
        field = self.task.oracle_reference
        column = answers if field == "answer" else (None if reference is None else _column("reference", reference, n))
        references = None if column is None else [_optional_str(r) for r in column]
        if self._derive is not None:
            references = [self._derive(t) for t in texts]
        self.task.check_responses(responses, n, "completions")
        result = self._scorer(texts, responses, references=references)
        result.check_batch(n, "scores")
        self.last_info = {k: np.asarray(v) for k, v in result.info.items()}
        return result.scores

    def close(self) -> None:
        """Release the env's verifier/oracle resources."""
        self.env.close()


def reward_function(env_id: str, *, name: str | None = None, **env_kwargs: Any) -> EnvReward:
    """A TRL reward function giving per-item rewards as the env ``env_id`` would (module docstring).

    Args:
        env_id: a registered ``oat/*`` verifiable or dueling id.
        name: the reward's ``__name__`` (TRL logs it); default ``env_id`` with ``/`` -> ``_``.
        **env_kwargs: the env's keyword arguments (the same as for :func:`prompt_dataset`).
    """
    return EnvReward(env_id, name=name, **env_kwargs)
