"""Math answer verifiers (reward oracles for verifiable-reward environments).

* :class:`IntegerAnswerVerifier` -- exact integer match; pure Python, no worker pool. Used by
  ``oat/Arithmetic-v0``.
* :class:`MathVerifier` -- symbolic equivalence through :mod:`oat_env.grading` (fast string path,
  then ``math-verify``/``sympy`` in a process pool with hard timeouts). Used by GSM8K/MATH envs.

Both implement :class:`~oat_env.oracles.base.RewardOracle`: ``references[i]`` is the gold answer
for ``responses[i]`` and ``scores[i] = 1.0`` if the extracted answer equals the gold else ``0.0``.
``info`` holds per-item ``correct`` (bool), ``formatted`` (bool: an answer could be extracted)
and ``extracted_answer`` (object: the extracted string or ``None``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from oat_env.grading.extract import EXTRACTORS, after_think, extract_answer, parse_integer
from oat_env.oracles.base import OracleResult, check_batch


def _check_batch(prompts: Sequence[str], responses: Sequence[str], references: Sequence | None) -> list:
    refs = check_batch(
        prompts, references, responses=responses,
        missing_references="math verifiers need `references` (the gold answers), got None",
    )
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise TypeError(f"responses[{i}] must be a str, got {type(r).__name__}")
    return refs


def _check_order(order: Sequence[str] | None) -> tuple[str, ...] | None:
    if order is None:
        return None
    order = tuple(order)
    unknown = [name for name in order if name not in EXTRACTORS]
    if unknown or not order:
        raise ValueError(f"unknown or empty extractor order {order!r}; choose from {sorted(EXTRACTORS)}")
    return order


def _result(
    correct: list[bool], formatted: list[bool], extracted: list[str | None], reward_correct: float,
    reward_wrong: float, metrics: dict[str, float],
) -> OracleResult:
    correct_arr = np.asarray(correct, dtype=bool)
    extracted_arr = np.empty(len(extracted), dtype=object)
    extracted_arr[:] = extracted
    return OracleResult(
        scores=np.where(correct_arr, reward_correct, reward_wrong).astype(np.float64),
        info={
            "correct": correct_arr,
            "formatted": np.asarray(formatted, dtype=bool),
            "extracted_answer": extracted_arr,
        },
        metrics=metrics,
    )


class IntegerAnswerVerifier:
    """Exact integer-match verifier: ``score = 1`` iff ``parse_integer(extract(response)) == gold``.

    The gold (``references[i]``) may be an ``int`` or a string that :func:`parse_integer` accepts
    (``"1,234"``, ``"-5"``, ``"42.0"``); a GSM8K-style gold solution ending in ``#### N`` also
    works (its answer is extracted first). An unparsable gold raises ``ValueError``: that is a
    dataset bug, not a wrong response.

    Args:
        strict: only explicit answer formats count (``\\boxed{}``, ``<answer>``, "the answer is",
            ``####``); no last-number fallback.
        order: explicit extractor order (keys of ``oat_env.grading.extract.EXTRACTORS``);
            overrides ``strict``.
        reward_correct / reward_wrong: the scores given to correct / wrong responses.
    """

    def __init__(
        self, strict: bool = False, order: Sequence[str] | None = None,
        reward_correct: float = 1.0, reward_wrong: float = 0.0,
    ):
        self.strict = bool(strict)
        self.order = _check_order(order)
        self.reward_correct = float(reward_correct)
        self.reward_wrong = float(reward_wrong)

    @staticmethod
    def _gold(ref: object, index: int) -> int:
        if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
            return int(ref)
        if isinstance(ref, str):
            value = parse_integer(ref)
            if value is None:
                value = parse_integer(extract_answer(ref, strict=True))
            if value is not None:
                return value
        raise ValueError(f"references[{index}] = {ref!r} is not an integer gold answer")

    def reward(
        self, prompts: Sequence[str], responses: Sequence[str], references: Sequence | None = None,
    ) -> OracleResult:
        """Score each response 1/0 against its integer gold answer (see class docstring)."""
        start = time.perf_counter()
        refs = _check_batch(prompts, responses, references)
        golds = [self._gold(ref, i) for i, ref in enumerate(refs)]
        correct, formatted, extracted = [], [], []
        for response, gold in zip(responses, golds, strict=True):
            # As the math grader: a reasoning model's scratch work before </think> is not its answer.
            answer = extract_answer(after_think(response), strict=self.strict, order=self.order)
            value = parse_integer(answer)
            extracted.append(answer)
            formatted.append(answer is not None)
            correct.append(value is not None and value == gold)
        return _result(correct, formatted, extracted, self.reward_correct, self.reward_wrong,
                       {"latency_s": time.perf_counter() - start})


class MathVerifier:
    """Math-equivalence verifier: ``score = 1`` iff the extracted answer is equivalent to the gold.

    Grades with :func:`oat_env.grading.grade_batch`: a fast normalising string/number path first,
    then math-verify (sympy) in a worker pool with a hard per-item timeout; timeouts grade as wrong.
    ``references[i]`` is the gold answer (``"\\frac{1}{2}"``) or a gold solution ending in
    ``\\boxed{}`` / ``#### N``.

    Args:
        strict: only the template's format counts (the first extractor of ``order``; without
            ``order``, only ``\\boxed{}``/``<answer>``), see :func:`oat_env.grading.extract.math_order`.
        order: explicit extractor order (default: ``oat_env.grading.extract.MATH_ORDER``, with
            free-form extraction instead of the last number).
        symmetric: accept if equivalence verifies in either direction.
        timeout_s: hard limit per symbolic check.
        pool: a :class:`~oat_env.grading.pool.GradingPool` (default: the process-wide pool, started
            lazily the first time a pair needs the symbolic check).
        reward_correct / reward_wrong: the scores given to correct / wrong responses.
        decimal_comma: read unambiguous decimal commas (``0,111``) as decimal points (default, as
            math-verify); see :func:`oat_env.grading.grade_batch`.
        gold_precision: a decimal prediction that rounds to a decimal gold's stated precision matches it
            (``3.14159`` for ``3.14``); off by default (math-verify compares at 6 decimals).
    """

    def __init__(
        self, strict: bool = False, order: Sequence[str] | None = None, symmetric: bool = False,
        timeout_s: float = 5.0, pool=None, reward_correct: float = 1.0, reward_wrong: float = 0.0,
        decimal_comma: bool = True, gold_precision: bool = False,
    ):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.strict = bool(strict)
        self.order = _check_order(order)
        self.symmetric = bool(symmetric)
        self.timeout_s = float(timeout_s)
        self.pool = pool
        self.reward_correct = float(reward_correct)
        self.reward_wrong = float(reward_wrong)
        self.decimal_comma = bool(decimal_comma)
        self.gold_precision = bool(gold_precision)

    def reward(
        self, prompts: Sequence[str], responses: Sequence[str], references: Sequence | None = None,
    ) -> OracleResult:
        """Score each response 1/0 against its gold answer (see class docstring)."""
        from oat_env.grading.equivalence import grade_batch

        start = time.perf_counter()
        refs = _check_batch(prompts, responses, references)
        golds = []
        for i, ref in enumerate(refs):
            if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
                ref = str(int(ref))
            if not isinstance(ref, str):
                raise ValueError(f"references[{i}] = {ref!r} is not a gold answer string")
            golds.append(ref)
        results = grade_batch(
            list(responses), golds, strict=self.strict, order=self.order, symmetric=self.symmetric,
            timeout_s=self.timeout_s, pool=self.pool, decimal_comma=self.decimal_comma,
            gold_precision=self.gold_precision,
        )
        metrics = {
            "latency_s": time.perf_counter() - start,
            "timeouts": float(sum(r.timed_out for r in results)),
            "symbolic_checks": float(sum(r.reason.startswith("symbolic") or r.timed_out for r in results)),
        }
        return _result(
            [r.correct for r in results], [r.formatted for r in results],
            [r.extracted_answer for r in results], self.reward_correct, self.reward_wrong, metrics,
        )
