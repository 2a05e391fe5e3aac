"""Math prompt data: GSM8K, MATH and Countdown records and the prompt templates they use."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from oat_env.data.records import PromptRecord
from oat_env.grading.extract import gsm8k_answer

# Prompt templates; ``{question}`` is the problem text.
MATH_TEMPLATES = {
    "plain": "{question}",
    "boxed": "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
    # Qwen2.5-Math's chat format with its boxed-answer system prompt (as in the Dr.GRPO recipe).
    "qwen_math": (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
        "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    ),
    # DeepSeek-R1-Zero style: reasoning in <think>, answer in <answer>.
    "r1": (
        "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
        "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
        "the answer. The reasoning process is enclosed within <think> </think> and answer is enclosed within "
        "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
        "<answer> answer here </answer>.\nUser: {question}\nAssistant: <think>"
    ),
}
# Where each template asks the model to put its answer: the extractor tried first (and the only one
# with strict=True), then the rest of oat_env.grading.extract.MATH_ORDER (free-form, math-verify-style
# extraction instead of the last number; order=[..., "last_number"] brings the old fallback back).
TEMPLATE_EXTRACTORS = {
    "plain": None,
    "boxed": ("boxes", "answer_tag", "gsm8k", "freeform"),
    "qwen_math": ("boxes", "answer_tag", "gsm8k", "freeform"),
    "r1": ("answer_tag", "boxes", "gsm8k", "freeform"),
}


def format_question(question: str, template: str) -> str:
    """Apply a template name from :data:`MATH_TEMPLATES` or a format string with ``{question}``."""
    if template in MATH_TEMPLATES:
        return MATH_TEMPLATES[template].format(question=question)
    if "{question}" not in template:
        raise ValueError(f"template must be one of {sorted(MATH_TEMPLATES)} or contain '{{question}}', got {template!r}")
    return template.format(question=question)


def gsm8k_record_fn(template: str) -> Callable[[Mapping[str, Any]], PromptRecord]:
    """Rows with ``question`` and ``answer`` (a solution ending in ``#### N``) -> records."""

    def to_record(row: Mapping[str, Any]) -> PromptRecord:
        for key in ("question", "answer"):
            if key not in row:
                raise KeyError(f"GSM8K row has no field {key!r}; available fields: {sorted(row)}")
        solution = str(row["answer"])
        gold = gsm8k_answer(solution)
        if gold is None:
            raise ValueError(f"GSM8K solution has no '#### answer' line: {solution[-100:]!r}")
        return PromptRecord(
            prompt=format_question(str(row["question"]), template), reference=solution, answer=gold.replace(",", "")
        )

    return to_record


def math_record_fn(template: str) -> Callable[[Mapping[str, Any]], PromptRecord]:
    """Rows with ``problem`` and ``answer`` (optionally ``solution``, ``unique_id``) -> records."""

    def to_record(row: Mapping[str, Any]) -> PromptRecord:
        for key in ("problem", "answer"):
            if key not in row:
                raise KeyError(f"MATH row has no field {key!r}; available fields: {sorted(row)}")
        uid = row.get("unique_id")
        return PromptRecord(
            prompt=format_question(str(row["problem"]), template),
            reference=None if row.get("solution") is None else str(row["solution"]),
            answer=str(row["answer"]),
            uid=None if uid is None else str(uid),
        )

    return to_record


COUNTDOWN_TEMPLATE = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic "
    "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. "
    "And return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)


class CountdownProblems:
    """Callable ``rng -> PromptRecord`` for solvable Countdown problems.

    The record's ``answer`` is the JSON reference ``{"numbers": [...], "target": N}`` the
    :class:`~oat_env.oracles.countdown.CountdownVerifier` checks against.
    """

    def __init__(self, template: str = COUNTDOWN_TEMPLATE, **generator_kwargs: Any):
        if "{numbers}" not in template or "{target}" not in template:
            raise ValueError("a Countdown template must contain '{numbers}' and '{target}'")
        self.template = template
        self.generator_kwargs = generator_kwargs
        self.__name__ = "countdown"
        self(np.random.default_rng(0))  # fail at construction, not at the first reset, on bad options

    def __call__(self, rng: np.random.Generator) -> PromptRecord:
        from oat_env.oracles.countdown import countdown_reference, generate_countdown_with_solution

        numbers, target, solution = generate_countdown_with_solution(rng, **self.generator_kwargs)
        reference = countdown_reference(numbers, target)
        return PromptRecord(
            prompt=self.template.format(numbers=list(numbers), target=target),
            reference=f"<answer> {solution} </answer>",
            answer=reference,
            uid=reference,
            meta={"numbers": list(numbers), "target": target},
        )
