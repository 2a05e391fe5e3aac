"""The symbolic path of grading, run inside pool workers: math-verify behind a ``parse_expr`` guard.

math-verify only ever receives a ``\\boxed{...}`` LaTeX string with its LaTeX extractor (never
``ExprExtractionConfig``, whose parser is sympy's ``parse_expr``, i.e. Python ``eval``), and each
worker replaces ``parse_expr`` with :func:`_check_safe_expression`'s guard. Timeouts are the pool's
(math-verify's own use signals, which only work in the main thread, so they are off here).
"""

from __future__ import annotations

import functools
import re

# Answers longer than this are graded wrong without symbolic work (also the guard's length cap).
MAX_SYMBOLIC_CHARS = 1_000

_SAFE_NAMES = frozenset(
    "pi E I oo nan zoo sqrt exp log ln sin cos tan cot sec csc asin acos atan sinh cosh tanh "
    "Integer Rational Float Symbol Add Mul Pow Abs factorial binomial Interval FiniteSet Tuple "
    "Matrix Eq Ne Lt Le Gt Ge And Or Not True False".split()
)
_SAFE_EXPR_RE = re.compile(r"^[A-Za-z0-9_\s.+\-*/^()\[\],=<>!]*$")
_CALL_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def _check_safe_expression(text: str) -> None:
    """Raise ``ValueError`` unless ``text`` is arithmetic that ``eval`` cannot turn into code execution.

    Allowed: numbers, operators, brackets, and names; a name may only be *called* if it is a known
    math function (:data:`_SAFE_NAMES`). No quotes, no attribute access (a ``.`` only inside
    numbers), no dunders. (sympy itself parses bare names such as unit prefixes ``"yotta"``.)
    """
    if len(text) > MAX_SYMBOLIC_CHARS or not _SAFE_EXPR_RE.match(text) or "__" in text:
        raise ValueError("refusing to evaluate a non-arithmetic string")
    if re.search(r"[A-Za-z_)\]]\s*\.", text) or re.search(r"\.\s*[A-Za-z_]", text):
        raise ValueError("refusing attribute access in an expression")
    for match in _CALL_RE.finditer(text):
        if match.group(1) not in _SAFE_NAMES:
            raise ValueError(f"refusing call of unknown name {match.group(1)!r} in an expression")


@functools.cache
def _install_parse_guard() -> None:
    """Make sympy's string parser (Python ``eval``) refuse anything but plain arithmetic.

    Runs once per worker process; math-verify and latex2sympy hold their own references to
    ``parse_expr``, so those are replaced too.
    """
    import sympy.parsing.sympy_parser as sympy_parser

    original = sympy_parser.parse_expr

    def guarded_parse_expr(s, *args, **kwargs):
        if isinstance(s, str):
            _check_safe_expression(s)
        return original(s, *args, **kwargs)

    sympy_parser.parse_expr = guarded_parse_expr
    import sympy.parsing as sympy_parsing

    sympy_parsing.parse_expr = guarded_parse_expr
    for module_name in ("math_verify.parser", "latex2sympy2_extended.latex2sympy2"):
        module = __import__(module_name, fromlist=["parse_expr"])
        if hasattr(module, "parse_expr"):
            module.parse_expr = guarded_parse_expr
    import math_verify.parser as mv_parser

    if hasattr(mv_parser, "parse_expr_cached"):
        mv_parser.parse_expr_cached = functools.lru_cache(maxsize=20)(
            lambda expr: guarded_parse_expr(expr, evaluate=False)
        )


def _braces_balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


@functools.lru_cache(maxsize=4096)
def _parse_latex(answer: str) -> tuple:
    """math-verify parse of one answer, LaTeX extractor only, no signal-based timeout."""
    import logging

    from math_verify import LatexExtractionConfig, parse

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _install_parse_guard()
    if not _braces_balanced(answer):
        return ()
    return tuple(
        parse(
            "\\boxed{" + answer + "}",
            extraction_config=[LatexExtractionConfig()],
            parsing_timeout=None,
        )
    )


def worker_init() -> None:
    """Called once by each pool worker before it reports ready: pay import and grammar set-up now,
    so they never count against a task's timeout."""
    symbolic_equal("\\frac{1}{2}", "0.5")


def symbolic_equal(
    pred: str,
    gold: str,
    symmetric: bool = False,
    float_rounding: int = 6,
    numeric_precision: int = 15,
) -> bool:
    """math-verify equivalence of two extracted answers (run inside a pool worker).

    ``verify(gold, pred)`` is asymmetric (e.g. a gold equation ``x = 2`` accepts ``2``). With
    ``symmetric=True`` the pair is accepted if either direction verifies, so the relation is
    symmetric by construction.
    """
    from math_verify import verify

    g, p = _parse_latex(gold), _parse_latex(pred)
    if not g or not p:
        return False
    kwargs = {
        "float_rounding": float_rounding,
        "numeric_precision": numeric_precision,
        "timeout_seconds": None,
    }
    if verify(list(g), list(p), **kwargs):
        return True
    return bool(symmetric and verify(list(p), list(g), **kwargs))
