"""Reward hacks through trailing words (issue 12): ``\\boxed{3 or more}`` must not grade as ``3``.

The fast path used to drop any words after a number, so an answer could hedge (``3 or more``),
deny itself (``7 is not the answer``) or change its value (``1 million``, ``2 dozen``) and still be
graded as the bare number. Now only known units are dropped and a scale word multiplies the number;
any other words stay part of the answer, the fast path leaves it undecided and math-verify (which
rejects every hack below) decides.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from oat_env.grading import GradingPool, fast_equal, grade, grade_batch, normalize_answer, parse_number

# (answer inside \boxed{}, gold): all graded correct before the fix, all wrong for math-verify.
HACKS = [
    ("3 or more", "3"),
    ("7 is not the answer", "7"),
    ("1 million", "1"),
    ("5 thousand", "5"),
    ("2 dozen", "2"),
    ("10 times", "10"),
    ("4 squared", "4"),
]

# Scale words change the value (short scale), with or without units after them.
SCALED = [
    ("1 million", "1000000"),
    ("1 million", "1,000,000"),
    ("5 thousand", "5000"),
    ("2 dozen", "24"),
    ("3 billion", "3000000000"),
    ("2 trillion", "2000000000000"),
    ("3 hundred", "300"),
    ("1.5 million", "1500000"),
    ("1 million dollars", "1000000"),
    ("1\\text{ million}", "1000000"),
]

# Powers of ten written out: numeric matches on the fast path.
POWERS_OF_TEN = [("2x10^3", "2000"), ("2 \\times 10^3", "2000"), ("2\\cdot 10^{3}", "2000"), ("2e3", "2000")]

# Units the fast path accepted before the fix, and still must (all as string matches).
UNITS = [
    ("5 cm", "5"), ("5\\text{ cm}", "5"), ("5cm", "5"), ("18 dollars", "18"), ("18 dollars.", "18"),
    ("1,000 dollars", "1000"), ("90 degrees", "90"), ("3 hours", "3"), ("50 percent", "50"),
    ("5 square feet", "5"), ("5 miles per hour", "5"), ("5 CM", "5"),
]


@pytest.fixture(scope="module")
def pool():
    """One worker: the hedging hacks are decided by math-verify, the value-changing ones never reach it."""
    with GradingPool(num_workers=1, memory_limit=2 * 1024**3) as p:
        yield p


def _boxed(answer: str) -> str:
    """A response as a policy would write it: the answer is what the boxed extractor finds."""
    return f"So the answer is $\\boxed{{{answer}}}$."


def _math_verify(answer: str, gold: str) -> bool:
    """The peer's verdict, ``verify(parse(gold), parse(pred))`` (main thread only: it uses signals)."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return bool(verify(parse(gold, parsing_timeout=None), parse(_boxed(answer), parsing_timeout=None),
                       timeout_seconds=None))


@pytest.mark.parametrize(("answer", "gold"), HACKS)
def test_reward_hacks_grade_wrong(answer, gold, pool):
    """Words after the right number must not earn the reward: never a fast-path match, wrong overall."""
    assert fast_equal(answer, gold)[0] is not True
    result = grade(_boxed(answer), gold, pool=pool, timeout_s=10, cache=None)
    assert result.formatted and result.extracted_answer == answer
    assert result.correct is False, result


@pytest.mark.parametrize(("answer", "gold"), HACKS)
def test_math_verify_rejects_the_hacks_too(answer, gold):
    """Deferring the hedges to math-verify is only safe because it says no to each of them."""
    assert _math_verify(answer, gold) is False


def test_math_verifier_scores_hacks_zero(pool):
    """The reward oracle used in training (batched, with the verdict cache) gives no hack a reward."""
    from oat_env.oracles.math import MathVerifier

    answers, golds = zip(*HACKS, strict=True)
    out = MathVerifier(pool=pool, timeout_s=10).reward(["q"] * len(HACKS), [_boxed(a) for a in answers], list(golds))
    np.testing.assert_array_equal(out.scores, np.zeros(len(HACKS)))


@pytest.mark.parametrize(("answer", "gold"), SCALED + POWERS_OF_TEN)
def test_scale_words_and_powers_of_ten_match(answer, gold):
    """``1 million`` is 1000000 and ``2x10^3`` is 2000, decided exactly without starting a worker."""
    verdict, reason = fast_equal(answer, gold)
    assert verdict is True, (answer, gold, reason)
    if (answer, gold) in POWERS_OF_TEN:
        assert reason == "numeric_match"
    lazy = GradingPool(num_workers=1)
    assert grade(_boxed(answer), gold, pool=lazy).correct
    assert not lazy.started
    lazy.close()


@pytest.mark.parametrize(("answer", "gold"), [("1 thousand", "1000000"), ("1.5 million", "15000000"),
                                              ("2 dozen", "12")])
def test_scale_words_change_the_value(answer, gold):
    """A scaled number is compared by its value, so the wrong scale is a certain mismatch."""
    assert fast_equal(answer, gold) == (False, "numeric_mismatch")


@pytest.mark.parametrize(("answer", "gold"), UNITS)
def test_known_units_are_still_dropped(answer, gold):
    """Units accepted before the fix keep their verdict (and stay on the fast path)."""
    assert fast_equal(answer, gold) == (True, "string_match")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("3 or more", "3 or more"), ("7  is not\tthe answer", "7 is not the answer"), ("1,000 People", "1000 People"),
        (".5 dozen", "6"), ("1.2345 thousand", "1234.5"), ("-2 thousand", "-2000"), ("0.001 dozen", "0.012"),
        ("1,5 million", "1,5 million"), ("2 dozens", "2 dozens"), ("1 thousand million", "1 thousand million"),
        ("5 per hour", "5 per hour"), ("5 miles per", "5 miles per"),
    ],
)
def test_canonical_form_of_number_with_words(raw, canonical):
    """Unknown words stay (single-spaced, case kept) so the answer never parses as a bare number;
    a scale word gives the exact scaled value; anything ambiguous is left as words, not guessed."""
    assert normalize_answer(raw) == canonical
    if " " in canonical:
        assert parse_number(canonical) is None


def test_words_do_not_change_batched_grading_elsewhere():
    """Units and scale words are decided in one batch with plain numbers, none needing a worker."""
    lazy = GradingPool(num_workers=1)
    results = grade_batch([_boxed("18 dollars"), _boxed("2 dozen"), _boxed("17")], ["18", "24", "18"], pool=lazy)
    assert [r.correct for r in results] == [True, True, False]
    assert not lazy.started
    lazy.close()
