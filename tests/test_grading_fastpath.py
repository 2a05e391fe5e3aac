"""Tests for the widened exact fast path (closed forms, polynomials, structures), the verdict cache,
batch de-duplication and chunked pool dispatch.

Every fast-path rule is checked against math-verify itself: for each pair the fast path decides,
its verdict must equal ``verify(parse(gold), parse(response))`` -- the baseline of oat_agents/bench/grader.py.
"""

from __future__ import annotations

import logging
import random
from fractions import Fraction

import pytest

from oat_env.grading import GradingPool, VerdictCache, fast_equal, grade_batch, parse_surd
from oat_env.grading.exact import Surd, clearly_apart, square_free
from oat_env.grading.poly import parse_polynomial

# (pred, gold, rule the fast path must use)
RULE_PAIRS = [
    # closed forms c * sqrt(r) * pi^k
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", "exact_match"),
    ("\\sqrt{20}", "2\\sqrt{5}", "exact_match"),
    ("\\frac{2}{\\sqrt{2}}", "\\sqrt{2}", "exact_match"),
    ("\\sqrt{2}\\sqrt{6}", "2\\sqrt{3}", "exact_match"),
    ("\\dfrac{\\pi}{3}", "\\pi/3", "exact_match"),
    ("\\pi \\cdot 4", "4\\pi", "exact_match"),
    ("\\frac{9}{2}\\pi", "\\frac{9\\pi}{2}", "exact_match"),
    ("3\\frac{1}{2}", "\\frac{7}{2}", "exact_match"),  # mixed number
    ("-2\\frac{1}{4}", "-\\frac{9}{4}", "exact_match"),
    ("2^{10}", "1024", "exact_match"),
    ("2\\times10^{3}", "2000", "numeric_match"),
    ("\\log_2 8", "3", "exact_match"),
    ("\\frac{-5}{6}", "-\\frac56", "numeric_match"),
    ("2^{-1}", "0.5", "numeric_match"),
    ("\\sqrt{10}", "2\\sqrt{5}", "exact_mismatch"),
    ("2", "\\sqrt{2}", "exact_mismatch"),
    ("\\pi", "3", "exact_mismatch"),
    ("2\\pi", "4\\pi", "exact_mismatch"),
    ("60", "\\frac{\\pi}{3}", "exact_mismatch"),
    ("-\\sqrt{3}", "\\sqrt{3}", "exact_mismatch"),
    ("2^{2022}", "2^{2023}", "exact_mismatch"),
    ("2", "\\log_2 8", "exact_mismatch"),
    ("3\\frac{1}{2}", "\\frac{2}{7}", "exact_mismatch"),
    # decimals against closed forms
    ("3.5", "3\\frac{1}{2}", "numeric_match"),
    ("3.4", "3\\frac{1}{2}", "numeric_mismatch"),
    ("3.14", "\\pi", "numeric_mismatch"),
    ("0.5", "\\frac{\\sqrt{3}}{2}", "numeric_mismatch"),
    # polynomials
    ("3 + 2x", "2x + 3", "polynomial_match"),
    ("1 + 2x + x^2", "x^2 + 2x + 1", "polynomial_match"),
    ("yx", "xy", "polynomial_match"),
    ("\\frac{1}{2}x + x", "\\frac{3}{2}x", "polynomial_match"),
    ("2x - 3", "2x + 3", "polynomial_mismatch"),
    ("x^2 + 1", "x^2 + 2x + 1", "polynomial_mismatch"),
    ("x", "y", "polynomial_mismatch"),
    # tuples, intervals, sets, matrices
    ("(2, 1)", "(1, 2)", "structure_mismatch"),
    ("(3, 1)", "(3, -1)", "structure_mismatch"),
    ("(1, 2, 4)", "(1, 2, 3)", "structure_mismatch"),
    ("[1, 2]", "(1, 2)", "structure_mismatch"),
    ("[3, 1]", "[5, 2]", "structure_mismatch"),  # two tuples
    ("(-3, 5)", "[-3, 5)", "structure_mismatch"),
    ("(-\\infty, 0)", "(-\\infty, 0]", "structure_mismatch"),
    ("[0, \\infty)", "(-\\infty, 0]", "structure_mismatch"),
    ("(\\sqrt{2}, 1)", "(\\sqrt{3}, 1)", "structure_mismatch"),
    ("\\{1, 2\\}", "\\{1, 2, 3\\}", "structure_mismatch"),
    ("\\{\\sqrt{20}, 1\\}", "\\{1, 2\\sqrt{5}\\}", "structure_match"),
    ("\\{1, 2, 2\\}", "\\{2, 1\\}", "structure_match"),
    ("\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "structure_mismatch"),
]

# Forms the fast path must leave to math-verify (its verdict there is not a plain exact comparison).
UNDECIDED = [
    ("\\sqrt{4}", "2"),  # kept symbolic on purpose (tests/test_math_oracles.py counts it there)
    ("1.414214", "\\sqrt{2}"),  # within math-verify's rounding
    ("\\pi2", "2\\pi"), ("1/2\\pi", "\\frac{\\pi}{2}"), ("1\\frac{1}{2}\\pi", "\\frac{3\\pi}{2}"),
    ("[-\\infty, 0]", "(-\\infty, 0]"),  # sympy opens infinite endpoints itself
    ("45", "\\frac{\\pi}{4}^\\circ"), ("0.5", "50\\%"), ("x - x + 1", "1"),
    ("e^3", "e^2"), ("\\log_2 3", "1.58"), ("\\sqrt[3]{8}", "2"), ("(x+1)^2", "x^2+2x+1"),
]


def _math_verify(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    response = f"So the answer is $\\boxed{{{pred}}}$."
    return bool(verify(parse("$" + gold + "$", parsing_timeout=None), parse(response, parsing_timeout=None),
                       timeout_seconds=None))


@pytest.mark.parametrize(("pred", "gold", "rule"), RULE_PAIRS)
def test_fast_rules_agree_with_math_verify(pred, gold, rule):
    verdict, reason = fast_equal(pred, gold)
    assert reason == rule
    assert verdict is _math_verify(pred, gold), (pred, gold, verdict)


@pytest.mark.parametrize(("pred", "gold"), UNDECIDED)
def test_ambiguous_forms_are_left_to_math_verify(pred, gold):
    assert fast_equal(pred, gold) == (None, "")


_FORMS = [
    "1", "2", "-2", "0", "12", "\\frac{1}{2}", "\\frac{3}{4}", "0.5", "0.75", "3.14", "1.4142136", "\\sqrt{2}",
    "\\sqrt{8}", "2\\sqrt{2}", "\\sqrt{12}", "\\frac{\\sqrt{3}}{2}", "\\frac{1}{\\sqrt{2}}", "\\pi", "2\\pi",
    "\\frac{\\pi}{2}", "\\pi/2", "\\pi^2", "3\\frac{1}{2}", "2^{10}", "1024", "10^3", "\\log_2 8", "3",
    "x", "2x+1", "1+2x", "x^2", "x^{2}", "xy", "(1, 2)", "(2, 1)", "[1, 2]", "[1, 2)", "(1, \\sqrt{2})",
    "(-\\infty, 1)", "(-\\infty, 1]", "\\{1, 2\\}", "\\{2, 1\\}", "\\{1, 3\\}", "\\infty", "e^2", "2e",
]


def test_random_pairs_agree_with_math_verify():
    """Seeded random pairs over many forms: every decided verdict matches math-verify."""
    rng = random.Random(0)
    decided = 0
    for _ in range(250):
        pred, gold = rng.choice(_FORMS), rng.choice(_FORMS)
        verdict, _ = fast_equal(pred, gold)
        if verdict is not None:
            decided += 1
            assert verdict is _math_verify(pred, gold), (pred, gold, verdict)
    assert decided > 80


def test_parse_surd_and_helpers():
    assert square_free(72) == (6, 2) and square_free(1) == (1, 1) and square_free(97) == (1, 97)
    with pytest.raises(ValueError, match="n >= 1"):
        square_free(0)
    assert parse_surd("\\frac{2}{\\sqrt{8}}") == Surd(Fraction(1, 2), 2, 0)
    assert parse_surd("-\\frac{\\pi^2}{4}").key == (Fraction(-1, 4), 1, 2)
    assert parse_surd("0\\sqrt{5}").key == (0, 1, 0)
    assert parse_surd("\\sqrt{9}").rational_root
    for bad in ["x", "0.5\\sqrt{2}", "\\frac{1}{0}", "2^{99999}", "\\sqrt{-4}", "1/2/3", "--1", "\\pix", ""]:
        assert parse_surd(bad) is None, bad
    assert clearly_apart(parse_surd("2^{2023}"), Surd(Fraction(2) ** 2023 + 1))  # exact rationals
    assert not clearly_apart(parse_surd("\\sqrt{2}"), parse_surd("\\frac{2}{\\sqrt{2}}"))


def test_parse_polynomial():
    assert parse_polynomial("3x^2-x+\\frac{1}{2}") == {(("x", 2),): 3, (("x", 1),): -1, (): Fraction(1, 2)}
    assert parse_polynomial("xy") == parse_polynomial("yx")
    for bad in ["3", "x-x", "2e", "x2", "x=1", "\\pi x", "x^{0}", "(x+1)^2", "2^x"]:
        assert parse_polynomial(bad) is None, bad


def test_verdict_cache_lru():
    cache = VerdictCache(maxsize=2)
    cache.put("a", True)
    cache.put("b", False)
    assert cache.get("a") is True  # "a" is now the most recent
    cache.put("c", True)
    assert cache.get("b") is None and cache.get("a") is True and len(cache) == 2
    assert (cache.hits, cache.misses) == (2, 1)
    cache.clear()
    assert len(cache) == 0 and cache.hits == 0
    assert VerdictCache(maxsize=0).get("a") is None
    with pytest.raises(ValueError, match="maxsize"):
        VerdictCache(maxsize=-1)


@pytest.fixture(scope="module")
def pool():
    with GradingPool(num_workers=2, memory_limit=2 * 1024**3) as p:
        yield p


def test_duplicates_graded_once_and_cached(pool):
    cache = VerdictCache()
    responses = ["\\boxed{(x+1)^2}", "\\boxed{(x-1)^2}"] * 4
    golds = ["x^2+2x+1"] * len(responses)
    first = grade_batch(responses, golds, pool=pool, cache=cache, timeout_s=10)
    assert [r.correct for r in first] == [True, False] * 4
    assert len(cache) == 2 and cache.misses == 2  # 8 pairs, 2 distinct symbolic checks
    again = grade_batch(responses[:2], golds[:2], pool=pool, cache=cache, timeout_s=10)
    assert [r.correct for r in again] == [True, False] and cache.hits == 2
    assert again[0].reason == "symbolic_match"
    uncached = grade_batch(responses[:2], golds[:2], pool=pool, cache=None, timeout_s=10)
    assert [r.correct for r in uncached] == [True, False]


def test_chunked_dispatch_keeps_per_task_timeout(pool):
    restarts = pool.restarts
    task = "oat_env.grading.equivalence:symbolic_equal"
    args = [("x+1", "1+x"), ("9^{9^{9^{9}}}", "3"), ("\\frac{1}{2}", "0.5"), ("y^2", "y y"), ("x", "y")]
    outcomes = pool.run(task, args, timeout_s=2, chunk_size=5)
    assert [o.status for o in outcomes] == ["ok", "timeout", "ok", "ok", "ok"]
    assert [o.value for o in outcomes if o.status == "ok"] == [True, True, True, False]
    assert pool.restarts == restarts + 1
    with pytest.raises(ValueError, match="chunk_size"):
        pool.run(task, args, timeout_s=2, chunk_size=0)
