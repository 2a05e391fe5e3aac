"""Procedural integer arithmetic problems (offline, unbounded, exact answers).

A problem is ``t_1 op_1 t_2 op_2 ... t_k`` with non-negative integer terms and operators from
``+ - *``; ``*`` binds tighter than ``+``/``-`` as usual. The exact value is computed with
integer arithmetic (no ``eval``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from oat_env.data.records import PromptRecord

PROMPT_TEMPLATES = {
    # For tiny character-level models: the expression and "=", the answer follows directly.
    "bare": "{expression}=",
    "question": "What is {expression}? Answer with a single integer.",
    "boxed": "Compute {expression}. Put your final answer within \\boxed{{}}.",
}
_ALLOWED_OPERATORS = set("+-*")


@dataclass(frozen=True)
class ArithmeticConfig:
    """Difficulty of procedural arithmetic problems.

    Attributes:
        min_digits: fewest digits of a term (1 allows single-digit terms, including 0).
        max_digits: most digits of a term.
        operators: operators to draw from, a subset of ``"+-*"``.
        num_terms: number of terms, an int or an inclusive ``(min, max)`` range.
        allow_negative: whether the result may be negative (if False, such draws are re-drawn).
        template: a key of :data:`PROMPT_TEMPLATES` or a format string containing ``{expression}``.
    """

    min_digits: int = 1
    max_digits: int = 2
    operators: str = "+-"
    num_terms: int | tuple[int, int] = 2
    allow_negative: bool = True
    template: str = "question"

    def __post_init__(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(
                f"need 1 <= min_digits <= max_digits, got min_digits={self.min_digits}, max_digits={self.max_digits}"
            )
        if self.max_digits > 18:
            raise ValueError(f"max_digits={self.max_digits} is too large (at most 18)")
        if not self.operators or not set(self.operators) <= _ALLOWED_OPERATORS:
            raise ValueError(f"operators must be a non-empty subset of '+-*', got {self.operators!r}")
        lo, hi = self.term_range
        if not 2 <= lo <= hi <= 16:
            raise ValueError(f"num_terms must be within [2, 16], got {self.num_terms!r}")
        if self.template not in PROMPT_TEMPLATES and "{expression}" not in self.template:
            raise ValueError(
                f"template must be one of {sorted(PROMPT_TEMPLATES)} or contain '{{expression}}', got {self.template!r}"
            )

    @property
    def term_range(self) -> tuple[int, int]:
        if isinstance(self.num_terms, int):
            return self.num_terms, self.num_terms
        lo, hi = self.num_terms
        return int(lo), int(hi)

    def format_prompt(self, expression: str) -> str:
        return PROMPT_TEMPLATES.get(self.template, self.template).format(expression=expression)


def evaluate_expression(terms: list[int], ops: list[str]) -> int:
    """Exact value of ``terms[0] ops[0] terms[1] ...`` with ``*`` before ``+``/``-``."""
    if len(ops) != len(terms) - 1:
        raise ValueError(f"{len(terms)} terms need {len(terms) - 1} operators, got {len(ops)}")
    total, product, sign = 0, terms[0], 1
    for op, term in zip(ops, terms[1:]):
        if op == "*":
            product *= term
        elif op in "+-":
            total += sign * product
            sign, product = (1 if op == "+" else -1), term
        else:
            raise ValueError(f"unknown operator {op!r}")
    return total + sign * product


def _draw_term(rng: np.random.Generator, cfg: ArithmeticConfig) -> int:
    digits = int(rng.integers(cfg.min_digits, cfg.max_digits + 1))
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return int(rng.integers(low, 10**digits))


def reference_response(value: int, template: str) -> str:
    """A correct response in the format the template asks for."""
    if template == "bare":
        return str(value)
    if template == "boxed":
        return f"\\boxed{{{value}}}"
    return f"The answer is {value}."


class ArithmeticProblems:
    """Callable ``rng -> PromptRecord`` drawing problems of a given difficulty."""

    def __init__(self, config: ArithmeticConfig | None = None):
        self.config = config or ArithmeticConfig()
        self.__name__ = "arithmetic"

    @property
    def term_values(self) -> range:
        """Every value a term can take: ``[0, 10**max_digits)`` with one-digit terms, else
        ``[10**(min_digits - 1), 10**max_digits)``."""
        cfg = self.config
        return range(0 if cfg.min_digits == 1 else 10 ** (cfg.min_digits - 1), 10**cfg.max_digits)

    def num_expressions(self) -> int:
        """Number of distinct expressions ``t_1 op_1 ... t_k`` the generator can write, before the
        ``allow_negative=False`` filter: ``sum_k T**k * O**(k - 1)`` over the term counts ``k``, with
        ``T`` term values and ``O`` distinct operators."""
        lo, hi = self.config.term_range
        terms, ops = len(self.term_values), len(set(self.config.operators))
        return sum(terms**k * ops ** (k - 1) for k in range(lo, hi + 1))

    def enumerate_problems(self, max_count: int) -> list[PromptRecord] | None:
        """Every distinct problem the generator can draw (one record per ``uid``, the expression), or
        ``None`` when :meth:`num_expressions` exceeds ``max_count`` (too many to list)."""
        if self.num_expressions() > max_count:
            return None
        return list(self._all_problems())

    def _all_problems(self) -> Iterator[PromptRecord]:
        cfg = self.config
        lo, hi = cfg.term_range
        operators = list(dict.fromkeys(cfg.operators))
        values = self.term_values
        for k in range(lo, hi + 1):
            for terms in itertools.product(values, repeat=k):
                for ops in itertools.product(operators, repeat=k - 1):
                    value = evaluate_expression(list(terms), list(ops))
                    if cfg.allow_negative or value >= 0:
                        yield self._record(list(terms), list(ops), value)

    def _record(self, terms: list[int], ops: list[str], value: int) -> PromptRecord:
        cfg = self.config
        expression = "".join(f"{t}{op}" for t, op in zip(terms, ops)) + str(terms[-1])
        return PromptRecord(
            prompt=cfg.format_prompt(expression),
            reference=reference_response(value, cfg.template),
            answer=str(value),
            uid=expression,
            meta={"expression": expression},
        )

    def __call__(self, rng: np.random.Generator) -> PromptRecord:
        cfg = self.config
        lo, hi = cfg.term_range
        # Bounded re-draws for allow_negative=False; subtraction-only configs still finish quickly.
        for _ in range(100):
            k = int(rng.integers(lo, hi + 1))
            terms = [_draw_term(rng, cfg) for _ in range(k)]
            ops = [cfg.operators[int(i)] for i in rng.integers(0, len(cfg.operators), size=k - 1)]
            value = evaluate_expression(terms, ops)
            if cfg.allow_negative or value >= 0:
                break
        else:
            raise ValueError(
                f"could not draw a non-negative problem with operators={cfg.operators!r} and "
                f"num_terms={cfg.num_terms!r} in 100 tries; set allow_negative=True or add '+'"
            )
        return self._record(terms, ops, value)
