"""``oat/ReasoningGym-v0``: reasoning-gym's procedural tasks as a verifiable-reward environment.

`reasoning-gym <https://github.com/open-thought/reasoning-gym>`_ ships ~100 offline procedural task
generators (arithmetic, algorithmic, logic, games, graphs, ARC, ...), each with its own scorer
``score_answer(answer, entry) -> float``. This module serves them through the project's
verifiable-env machinery (DESIGN.md §2.2): a :class:`ProceduralPrompts` source
(:class:`ReasoningGymPrompts`) plus a :class:`~oat_env.oracles.base.RewardOracle`
(:class:`ReasoningGymVerifier`), wrapped in :class:`ReasoningGymEnv` (a :class:`VerifiableEnv`) and
its native vector twin :class:`ReasoningGymVectorEnv` (a :class:`VerifiableVectorEnv`: one batched
verifier call per ``step``).

Tasks (``task=``): one reasoning-gym dataset name (``"leg_counting"``), a list of names (an
equal-weight mixture) or a ``{name: weight}`` dict. A mixture is reasoning-gym's own
``CompositeDataset``: item ``i`` picks its task with ``Random(seed + i)`` by weight, and scoring
forwards to that task's scorer. ``task_config`` sets the tasks' config fields (for one task a dict
of its fields, for a mixture ``{name: {field: value}}``); ``seed`` and ``size`` are set by the env.

Held-out split, by seed range: reasoning-gym item ``i`` of a dataset with seed ``s`` is generated
from ``Random(s + i)``. Training items are items ``0 .. train_size-1`` of the dataset seeded
``dataset_seed`` (generator seeds ``[dataset_seed, dataset_seed + train_size)``), drawn uniformly
with replacement from the env's ``np_random``; evaluation items are items ``0 .. eval_size-1`` of the
dataset seeded ``dataset_seed + train_size`` (generator seeds ``[dataset_seed + train_size,
dataset_seed + train_size + eval_size)``), a fixed list in index order. The two seed ranges are
disjoint (for a mixture, sub-task ``k`` gets seed ``+ k + 1`` in both splits, so they stay disjoint
per task). The split is over generator seeds: a task with a small problem space can still produce
the same question text from two seeds, and the few tasks that draw a pool from their seed
(``acre``, ``list_functions``, ``gsm_symbolic``, ``word_ladder``: ``train_size`` at most 20000 for
the last) differ per seed but not by seed range.

Answers: the prompt asks for the bare answer in a format the env extracts (``template``):

* ``"default"``: reasoning-gym's default instruction (its ``SYSTEM_PROMPTS["default"]``: answer in
  ``<answer>answer here</answer>``) followed by the question; extracted with ``answer_tag`` (the
  content of the last ``<answer>...</answer>`` pair, stripped).
* ``"r1"``: the DeepSeek-R1-Zero template of the math envs (``<think>`` then ``<answer>``); ``answer_tag``.
* ``"answer_is"``: the question plus "End your response with a line ``Answer: <your final answer>``";
  extracted with ``answer_is`` (the rest of the line after the last "answer:"/"answer is", a
  trailing period removed; single-line answers only).
* ``"plain"``: the bare question; extracted with ``raw`` (the whole response, stripped).
* or a format string with ``{question}`` (and optionally ``{system}``, reasoning-gym's default
  instruction); extracted with ``answer_tag`` unless ``extractor=`` says otherwise.

An answer that cannot be extracted (or is empty) is passed to the scorer as ``None``
(reasoning-gym's convention for "no answer"), and ``formatted`` is ``False``.

Reward: the task's ``score_answer`` float (reasoning-gym's partial credit included, e.g. ``0.01``
for a well-formed wrong answer on some tasks); ``reward="binary"`` uses the verifiable env's
``correct_reward``/``incorrect_reward`` map instead. A scorer that raises (some do on malformed
answers) scores ``0.0``, counted in ``env.last_oracle_metrics["oracle/scorer_errors"]``.
Info (per item): ``correct`` (``score == 1.0``), ``formatted``, ``extracted_answer`` (str or None),
``task`` (the reasoning-gym dataset that made the item, useful in mixtures) and ``score``.

Records: ``PromptRecord.answer`` is a JSON reference ``{"split", "index", "task", "answer"}``; the
verifier regenerates the reasoning-gym entry from ``(split, index)`` (generation is deterministic;
a bounded cache avoids regenerating recent items), so saved records resume and score exactly.

``reasoning-gym`` is optional: importing this module (and ``oat_env``) does not import it; building
the env without it raises an ``ImportError`` naming ``pip install reasoning-gym``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from oat_env.data.math_data import MATH_TEMPLATES
from oat_env.data.records import PromptRecord
from oat_env.data.sources import ProceduralPrompts
from oat_env.envs.base import SingleTurnEnv, SingleTurnVectorEnv
from oat_env.envs.verifiable import VerifiableEnv, VerifiableTask, VerifiableVectorEnv
from oat_env.grading.extract import answer_is, answer_tag
from oat_env.oracles.base import OracleResult, check_batch

ENV_ID = "oat/ReasoningGym-v0"
INSTALL_HINT = "pip install reasoning-gym"
DEFAULT_TASK = "leg_counting"
DEFAULT_TRAIN_SIZE = 20_000
DEFAULT_EVAL_SIZE = 1_000
# Generator seeds stay below 2**32 (some tasks seed numpy, which needs it).
_MAX_SEED = 2**32

TEMPLATES = {
    "default": "{system}\n{question}",
    "r1": MATH_TEMPLATES["r1"],
    "answer_is": '{question}\n\nEnd your response with a line of the form "Answer: <your final answer>".',
    "plain": "{question}",
}
TEMPLATE_EXTRACTORS = {"default": "answer_tag", "r1": "answer_tag", "answer_is": "answer_is", "plain": "raw"}
REWARD_MODES = ("score", "binary")


def _raw(text: str) -> str | None:
    return text.strip() or None


EXTRACTORS = {"answer_tag": answer_tag, "answer_is": answer_is, "raw": _raw}


def import_reasoning_gym() -> Any:
    """The ``reasoning_gym`` package, or an ``ImportError`` that says how to install it."""
    try:
        import reasoning_gym
        import reasoning_gym.composite
        import reasoning_gym.factory
        import reasoning_gym.utils
    except ImportError as exc:
        raise ImportError(
            f"{ENV_ID} needs the reasoning-gym package, which could not be imported ({exc}); "
            f"install it with `{INSTALL_HINT}`"
        ) from exc
    return reasoning_gym


def available_tasks() -> list[str]:
    """The reasoning-gym dataset names ``task=`` accepts (needs reasoning-gym)."""
    rg = import_reasoning_gym()
    return sorted(name for name in rg.factory.DATASETS if name != "composite")


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value >= high):
        bound = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def _task_weights(task: Any) -> dict[str, float]:
    """``task=`` as ``{name: weight}`` (a name, a list of names, or a dict of weights)."""
    if isinstance(task, str):
        return {task: 1.0}
    if isinstance(task, Mapping):
        items = list(task.items())
    elif isinstance(task, Sequence):
        names = list(task)
        duplicates = sorted({n for n in names if names.count(n) > 1}, key=str)
        if duplicates:
            raise ValueError(f"task lists {duplicates} more than once; give weights as a dict instead")
        items = [(n, 1.0) for n in names]
    else:
        raise TypeError(f"task must be a dataset name, a list of names or a {{name: weight}} dict, got {type(task).__name__}")
    if not items:
        raise ValueError("task is empty: name at least one reasoning-gym dataset")
    weights = {}
    for name, weight in items:
        if not isinstance(name, str):
            raise TypeError(f"task names must be str, got {type(name).__name__}: {name!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
            raise TypeError(f"the weight of task {name!r} must be a number, got {type(weight).__name__}")
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"the weight of task {name!r} must be a finite number > 0, got {weight}")
        weights[name] = float(weight)
    return weights


def _task_configs(rg: Any, names: list[str], task_config: Any) -> dict[str, dict[str, Any]]:
    """Per-task config fields, checked against each task's config dataclass."""
    if task_config is None:
        task_config = {}
    if not isinstance(task_config, Mapping):
        raise TypeError(f"task_config must be a dict, got {type(task_config).__name__}")
    keyed = set(task_config) <= set(names) and all(isinstance(v, Mapping) for v in task_config.values())
    if len(names) == 1 and not (keyed and task_config):
        configs = {names[0]: dict(task_config)}  # one task: its fields directly
    else:
        unknown = sorted(set(task_config) - set(names), key=str)
        if unknown:
            raise ValueError(f"task_config names tasks {unknown} that are not in task={names}")
        configs = {}
        for name in names:
            config = task_config.get(name) or {}
            if not isinstance(config, Mapping):
                raise TypeError(f"task_config[{name!r}] must be a dict of config fields, got {type(config).__name__}")
            configs[name] = dict(config)
    for name, config in configs.items():
        fields = {f.name for f in dataclasses.fields(rg.factory.DATASETS[name][1])}
        reserved = sorted({"seed", "size"} & set(config))
        if reserved:
            raise ValueError(
                f"task_config for {name!r} sets {reserved}: the env sets them (use dataset_seed, train_size, eval_size)"
            )
        unknown = sorted(set(config) - fields, key=str)
        if unknown:
            raise ValueError(f"{name!r} has no config fields {unknown}; its fields are {sorted(fields - {'seed', 'size'})}")
    return configs


class ReasoningGymData:
    """The reasoning-gym datasets behind one env: a training and a held-out dataset (seed ranges in the
    module docstring), entry lookup by ``(split, index)`` with a bounded cache, and scoring.

    Args:
        task: a dataset name, a list of names or a ``{name: weight}`` dict.
        task_config: config fields, for one task directly, for a mixture keyed by task name.
        dataset_seed: the training dataset's seed; the held-out dataset's is ``dataset_seed + train_size``.
        train_size / eval_size: items in the training / held-out dataset.
    """

    CACHE_SIZE = 4096
    SPLITS = ("train", "eval")

    def __init__(
        self,
        task: Any = DEFAULT_TASK,
        task_config: Mapping[str, Any] | None = None,
        dataset_seed: int = 0,
        train_size: int = DEFAULT_TRAIN_SIZE,
        eval_size: int = DEFAULT_EVAL_SIZE,
    ):
        rg = self.rg = import_reasoning_gym()
        self.weights = _task_weights(task)
        names = list(self.weights)
        known = set(available_tasks())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown reasoning-gym task(s) {unknown}; available: {sorted(known)}")
        self.configs = _task_configs(rg, names, task_config)
        train_size = _check_int(train_size, "train_size", 1)
        eval_size = _check_int(eval_size, "eval_size", 1)
        top = _MAX_SEED - train_size - eval_size - len(names) - 1
        dataset_seed = _check_int(dataset_seed, "dataset_seed", 0, max(top, 1))
        self.seeds = {"train": dataset_seed, "eval": dataset_seed + train_size}
        self.sizes = {"train": train_size, "eval": eval_size}
        self.is_mixture = len(names) > 1
        self.name = names[0] if not self.is_mixture else "mixture(" + ",".join(names) + ")"
        self._datasets: dict[str, Any] = {"train": self._build("train")}  # the held-out one on first use
        self._cache: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()

    def __repr__(self) -> str:
        return f"ReasoningGymData({self.name!r}, seeds={self.seeds}, sizes={self.sizes})"

    def _build(self, split: str) -> Any:
        seed, size = self.seeds[split], self.sizes[split]
        if not self.is_mixture:
            ((name, config),) = self.configs.items()
            return self.rg.create_dataset(name, seed=seed, size=size, **config)
        composite = self.rg.composite
        specs = [composite.DatasetSpec(name=n, weight=w, config=dict(self.configs[n])) for n, w in self.weights.items()]
        return composite.CompositeDataset(composite.CompositeConfig(size=size, seed=seed, datasets=specs))

    def dataset(self, split: str) -> Any:
        """The reasoning-gym dataset of ``split`` (``"train"`` or ``"eval"``)."""
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {self.SPLITS}, got {split!r}")
        if split not in self._datasets:
            self._datasets[split] = self._build(split)
        return self._datasets[split]

    def entry(self, split: str, index: int) -> dict[str, Any]:
        """Item ``index`` of ``split``: reasoning-gym's ``{"question", "answer", "metadata"}`` dict."""
        dataset = self.dataset(split)
        index = _check_int(index, f"{split} index", 0, self.sizes[split])
        key = (split, index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        entry = dataset[index]
        self._cache[key] = entry
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        return entry

    def task_of(self, entry: Mapping[str, Any]) -> str:
        """The reasoning-gym dataset that generated ``entry``."""
        return str(entry.get("metadata", {}).get("source_dataset", self.name))

    def score(self, answer: str | None, entry: Mapping[str, Any], split: str) -> float:
        """reasoning-gym's ``score_answer`` by the dataset that made the entry (a mixture forwards)."""
        return float(self.dataset(split).score_answer(answer, entry))


def _reference(split: str, index: int, task: str, answer: Any) -> str:
    return json.dumps({"split": split, "index": index, "task": task, "answer": answer}, default=str)


def format_prompt(template: str, question: str, system: str) -> str:
    """Apply a :data:`TEMPLATES` name or a format string with ``{question}`` (and optionally ``{system}``)."""
    return TEMPLATES.get(template, template).format(question=question, system=system)


class ReasoningGymPrompts(ProceduralPrompts):
    """A procedural prompt source over :class:`ReasoningGymData` with the seed-range held-out split.

    Training draws pick an index of the training dataset uniformly (with replacement) from the
    env's generator; :meth:`eval_records` returns the held-out dataset's first ``n`` items. The hash
    split of :class:`ProceduralPrompts` is off (``eval_fraction=0``): the splits are separate datasets.
    """

    def __init__(self, data: ReasoningGymData, template: str = "default"):
        if template not in TEMPLATES and "{question}" not in template:
            raise ValueError(f"template must be one of {sorted(TEMPLATES)} or contain '{{question}}', got {template!r}")
        self.data = data
        self.template = template
        self.system = data.rg.utils.SYSTEM_PROMPTS["default"]
        super().__init__(self._generate, eval_fraction=0.0, name=f"reasoning_gym:{data.name}")

    def record(self, split: str, index: int) -> PromptRecord:
        """The prompt record of item ``index`` of ``split``."""
        entry = self.data.entry(split, index)
        task = self.data.task_of(entry)
        return PromptRecord(
            prompt=format_prompt(self.template, str(entry["question"]), self.system),
            answer=_reference(split, index, task, entry.get("answer")),
            uid=f"{self.data.name}/{split}/{index}",
            meta={"task": task, "split": split, "index": index},
        )

    def _generate(self, rng: np.random.Generator) -> PromptRecord:
        return self.record("train", int(rng.integers(self.data.sizes["train"])))

    def eval_records(self, n: int | None = None, seed: int = 0) -> list[PromptRecord]:
        """The first ``n`` held-out items (all ``eval_size`` if ``n`` is None). ``seed`` is unused: the
        held-out set is a fixed list, like a dataset's test split (grow it with ``eval_size``)."""
        size = self.data.sizes["eval"]
        n = size if n is None else _check_int(n, "n", 0)
        if n > size:
            raise ValueError(f"{self.name}: asked for {n} held-out prompts, the held-out set has eval_size={size}")
        return [self.record("eval", i) for i in range(n)]


class ReasoningGymVerifier:
    """:class:`~oat_env.oracles.base.RewardOracle` scoring responses with the tasks' own ``score_answer``.

    ``references[i]`` is the record's JSON reference (:class:`ReasoningGymPrompts`); the entry is
    looked up by its ``(split, index)``. ``scores[i]`` is the task's float score of the extracted
    answer; info: ``correct`` (score == 1.0), ``formatted``, ``extracted_answer``, ``task``.
    """

    def __init__(self, data: ReasoningGymData, extractor: str = "answer_tag"):
        if extractor not in EXTRACTORS:
            raise ValueError(f"extractor must be one of {sorted(EXTRACTORS)}, got {extractor!r}")
        self.data = data
        self.extractor = extractor
        self._extract = EXTRACTORS[extractor]

    def __repr__(self) -> str:
        return f"ReasoningGymVerifier({self.data.name!r}, extractor={self.extractor!r})"

    def extract(self, response: str) -> str | None:
        """The answer the scorer sees (``None``: nothing extractable)."""
        return self._extract(response) or None

    def _entry(self, reference: Any, i: int) -> tuple[str, dict[str, Any]]:
        try:
            ref = json.loads(reference)
            split, index = ref["split"], ref["index"]
        except (TypeError, ValueError, KeyError):
            raise ValueError(
                f"references[{i}] is not a reasoning-gym reference (JSON with split and index): {str(reference)[:120]!r}"
            ) from None
        entry = self.data.entry(split, index)
        if "answer" in ref and json.loads(json.dumps(entry.get("answer"), default=str)) != ref["answer"]:
            raise ValueError(
                f"references[{i}] ({split} item {index}) does not match this env's {self.data.name} datasets "
                "(a record from an env with another task, task_config or dataset_seed?)"
            )
        return split, entry

    def reward(
        self, prompts: Sequence[str], responses: Sequence[str], references: Sequence[str | None] | None = None
    ) -> OracleResult:
        refs = check_batch(
            prompts, references, responses=responses,
            missing_references="the reasoning-gym verifier needs `references` (the records' answers), got None",
        )
        start = time.perf_counter()
        n = len(responses)
        scores = np.zeros(n, dtype=np.float64)
        extracted = np.empty(n, dtype=object)
        tasks = np.empty(n, dtype=object)
        errors = 0
        for i, (response, reference) in enumerate(zip(responses, refs)):
            if not isinstance(response, str):
                raise TypeError(f"responses[{i}] must be a str, got {type(response).__name__}")
            split, entry = self._entry(reference, i)
            answer = self.extract(response)
            try:
                score = self.data.score(answer, entry, split)
            except Exception:  # a task scorer that chokes on a malformed answer: no credit
                score, errors = 0.0, errors + 1
            scores[i] = score if math.isfinite(score) else 0.0
            extracted[i], tasks[i] = answer, self.data.task_of(entry)
        formatted = np.array([a is not None for a in extracted], dtype=bool)
        return OracleResult(
            scores=scores,
            info={"correct": scores == 1.0, "formatted": formatted, "extracted_answer": extracted, "task": tasks},
            metrics={"oracle/scorer_errors": float(errors), "oracle/score_s": time.perf_counter() - start},
        )


class ReasoningGymTask(VerifiableTask):
    """:class:`VerifiableTask` whose reward is the verifier's float score (``reward="score"``, default)
    or the binary ``correct_reward``/``incorrect_reward`` map (``reward="binary"``); with
    ``unformatted_reward`` set, it replaces the reward of unextractable answers in both modes.
    :meth:`evaluate` adds per-task results (``by_task``), for mixtures."""

    def __init__(self, prompts: Any, verifier: Any, *, reward: str = "score", **kwargs: Any):
        if reward not in REWARD_MODES:
            raise ValueError(f"reward must be one of {REWARD_MODES}, got {reward!r}")
        super().__init__(prompts, verifier, **kwargs)
        self.reward_mode = reward

    def _rewards(self, result: OracleResult) -> np.ndarray:
        if self.reward_mode == "binary":
            return super()._rewards(result)
        rewards = np.asarray(result.scores, dtype=np.float64).copy()
        if self.unformatted_reward is not None and "formatted" in result.info:
            rewards[~np.asarray(result.info["formatted"], dtype=bool)] = self.unformatted_reward
        return rewards

    def evaluate(self, responses: Sequence[str], prompts: Sequence[Any]) -> dict[str, Any]:
        """As :meth:`VerifiableTask.evaluate`, plus ``by_task``: ``{task: {"accuracy", "mean_reward",
        "num_prompts"}}``."""
        records = self.resolve(prompts)
        responses = self.check_responses(responses, len(records), "responses")
        result = self._verify(records, responses)
        correct = np.asarray(result.info["correct"], dtype=bool)
        rewards = self._rewards(result)
        tasks = np.asarray(result.info["task"], dtype=object)
        by_task = {
            str(t): {
                "accuracy": float(correct[tasks == t].mean()),
                "mean_reward": float(rewards[tasks == t].mean()),
                "num_prompts": int((tasks == t).sum()),
            }
            for t in sorted(set(tasks.tolist()))
        }
        return {
            "accuracy": float(correct.mean()) if len(correct) else 0.0,
            "mean_reward": float(rewards.mean()) if len(rewards) else 0.0,
            "correct": correct,
            "num_prompts": len(records),
            "by_task": by_task,
        }


class ReasoningGymEnv(VerifiableEnv):
    """The single env: a :class:`VerifiableEnv` over a :class:`ReasoningGymTask` (float-score rewards)."""

    def __init__(self, prompts: ReasoningGymPrompts, verifier: ReasoningGymVerifier, **kwargs: Any):
        SingleTurnEnv.__init__(self, ReasoningGymTask(prompts, verifier, **kwargs))


class ReasoningGymVectorEnv(VerifiableVectorEnv):
    """The native vector twin: ``num_envs`` prompts per round, one batched verifier call per ``step``."""

    def __init__(self, prompts: ReasoningGymPrompts, verifier: ReasoningGymVerifier, num_envs: int, **kwargs: Any):
        SingleTurnVectorEnv.__init__(self, ReasoningGymTask(prompts, verifier, **kwargs), num_envs)


_DATA_KEYS = ("task", "task_config", "dataset_seed", "train_size", "eval_size")


def _reasoning_gym(kwargs: dict[str, Any]) -> tuple[ReasoningGymPrompts, ReasoningGymVerifier]:
    """Pop the data options, ``template`` and ``extractor``; build the prompt source and verifier."""
    data = ReasoningGymData(**{k: kwargs.pop(k) for k in _DATA_KEYS if k in kwargs})
    template = kwargs.pop("template", "default")
    extractor = kwargs.pop("extractor", None) or TEMPLATE_EXTRACTORS.get(template, "answer_tag")
    return ReasoningGymPrompts(data, template), ReasoningGymVerifier(data, extractor)


def make_reasoning_gym_env(**kwargs: Any) -> ReasoningGymEnv:
    """``oat/ReasoningGym-v0``: ``task`` (a reasoning-gym dataset name, default ``"leg_counting"``; a
    list of names; or a ``{name: weight}`` dict), ``task_config``, ``dataset_seed`` (default 0),
    ``train_size`` (default 20000), ``eval_size`` (default 1000), ``template`` (``"default"``,
    ``"r1"``, ``"answer_is"``, ``"plain"`` or a format string with ``{question}``), ``extractor``
    (``"answer_tag"``, ``"answer_is"``, ``"raw"``; default: the template's), ``reward``
    (``"score"``/``"binary"``) and the :class:`~oat_env.envs.verifiable.VerifiableTask` options
    (``correct_reward``, ``incorrect_reward``, ``unformatted_reward``, ``max_queries``,
    ``max_prompt_length``, ``max_response_length``). See the module docstring."""
    prompts, verifier = _reasoning_gym(kwargs)
    return ReasoningGymEnv(prompts, verifier, **kwargs)


def make_reasoning_gym_vector_env(num_envs: int = 1, **kwargs: Any) -> ReasoningGymVectorEnv:
    prompts, verifier = _reasoning_gym(kwargs)
    return ReasoningGymVectorEnv(prompts, verifier, num_envs=num_envs, **kwargs)
