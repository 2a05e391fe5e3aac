"""Answer extraction and math equivalence with process-isolated timeouts.

Importing this package is cheap: sympy and math-verify are imported only inside grading workers
(or on the first symbolic check), never at import time.

Main entry points:

* :func:`grade_batch` / :func:`grade` -- verdicts (:class:`GradeResult`) for responses vs gold answers;
* :func:`extract_answer` and the individual extractors (:func:`freeform_answer`: math-verify-style
  extraction from free text; :data:`MATH_ORDER` / :func:`math_order`: the MATH-style order);
* :func:`rewrite_answer` -- one written form per meaning (calculator syntax, relations, matrices);
* :func:`fast_equal`, :func:`normalize_answer`, :func:`parse_number`, :func:`parse_surd` -- the
  cheap exact path (no sympy, no eval);
* :class:`GradingPool` -- worker processes with a hard per-task timeout;
* :class:`VerdictCache` / :func:`clear_verdict_cache` -- the parent-side LRU of symbolic verdicts.
"""

from oat_env.grading.cache import VerdictCache
from oat_env.grading.equivalence import (
    VERDICT_CACHE,
    GradeResult,
    clear_verdict_cache,
    fast_equal,
    gold_answer,
    grade,
    grade_batch,
)
from oat_env.grading.exact import Surd, parse_surd
from oat_env.grading.extract import (
    EXTRACTORS,
    MATH_ORDER,
    answer_is,
    answer_tag,
    boxed_answers,
    extract_answer,
    gsm8k_answer,
    last_boxed,
    last_number,
    math_order,
    parse_integer,
)
from oat_env.grading.freeform import freeform_answer
from oat_env.grading.normalize import normalize_answer, parse_number
from oat_env.grading.pool import GradingPool, TaskOutcome, default_pool
from oat_env.grading.rewrite import rewrite_answer

__all__ = [
    "EXTRACTORS",
    "MATH_ORDER",
    "GradeResult",
    "GradingPool",
    "Surd",
    "TaskOutcome",
    "VERDICT_CACHE",
    "VerdictCache",
    "answer_is",
    "answer_tag",
    "boxed_answers",
    "clear_verdict_cache",
    "default_pool",
    "extract_answer",
    "fast_equal",
    "freeform_answer",
    "gold_answer",
    "grade",
    "grade_batch",
    "gsm8k_answer",
    "last_boxed",
    "last_number",
    "math_order",
    "normalize_answer",
    "parse_integer",
    "parse_number",
    "parse_surd",
    "rewrite_answer",
]
