"""The grader's conventions, one list per category (issue 12).

Every case is our own, written from a documented convention of a grader of the field; the comment on
each list (or case) names the convention and its source:

* MV  -- Math-Verify (huggingface/Math-Verify): ``parse`` (LaTeX + expression extractors, priorities
  "final answer is ... I hope" < "final answer ... is" < "answer:" < "answer" < anything) and ``verify``;
* LM  -- lm-eval-harness minerva_math (``Final Answer: The final answer is $x$. I hope it is correct.``,
  answers normalised by stripping units, ``\\text{}``, ``\\left``/``\\right``, ``$``);
* QW  -- Qwen2.5-Math's evaluation (``strip_string``: units, ``\\%``, ``\\$``, thousands commas,
  leading-dot decimals, matrices of any bracket style, choices ``(C)``; ``math_equal``: numbers,
  percent as a number or its fraction, symbolic equality);
* OAT -- a rule of this grader, where the field disagrees or is silent (see the README's grader rules).

Cases are ``(gold, response, expected)``: the response is the whole model output, graded with the
default (MATH-style) extraction.
"""

from __future__ import annotations

import time

import pytest

from oat_env.grading import GradingPool, grade, grade_batch

# ---------------------------------------------------------------------- extraction from free-form text
FREE_FORM = [
    # MV: inline and display math spans are answers, the last one wins.
    ("\\frac{7}{3}", "After simplifying we get $\\frac{7}{3}$.", True),
    ("8", "Adding everything: $$ 8 $$", True),
    ("11", "So it equals \\( (10+1) \\)", True),
    ("11", "So it equals \\[ 5 + 6 \\]", True),
    ("\\sqrt{5}", "Hence the side is $\\sqrt{5}$ cm long.", True),  # MV: not the 5 inside \sqrt
    # MV: a bare \frac{a}{b} is read whole, never as its last number.
    ("\\frac{7}{3}", "After simplifying we get \\frac{7}{3}", True),
    ("3", "After simplifying we get \\frac{7}{3}", False),
    # LM / MV: the Minerva format has the highest priority, even with text after it.
    ("14", "Work.\nFinal Answer: The final answer is $14$. I hope it is correct.", True),
    ("14", "Final Answer: The final answer is $14$. I hope it is correct.\nProblem: next one is 3.", True),
    ("15", "Work.\nFinal Answer: The final answer is $14$. I hope it is correct.", False),
    # MV: "the answer is X" / "answer: X" take the first math right after the anchor.
    ("\\frac{1}{4}", "thus the answer is $\\frac14$ (not $\\frac15$)", True),
    ("\\frac{1}{5}", "thus the answer is $\\frac14$ (not $\\frac15$)", False),
    ("21", "Answer: 21", True),
    ("21", "The final answer is 21", True),
    (
        "9",
        "I first thought the answer is 8, but the final answer is 9",
        True,
    ),  # MV: "final answer ... is" first
    # OAT: only the text after the last </think> is the answer (reasoning models' scratch work is not).
    ("6", "<think>maybe 5, or 4</think> The count is 6.", True),
    ("6", "<think>it is 6</think> 5", False),
    # MV: numbers stand on their own: after a space or "=", never glued to a word.
    ("40", "so 20 + 20 = 40", True),
    ("4", "The code is QX4Z", False),
    ("0.7", "which is .7", True),  # MV / QW: leading-dot decimal
    ("\\frac{5}{8}", "The ratio is 5/8.", True),  # MV: a plain expression
    ("3.61", "Since 1.9^2 is the square: 1.9^2", True),  # MV: an arithmetic expression is evaluated
    # OAT: a whole response that is only math is the answer.
    ("ab+ac", "a(b+c)", True),
    ("1000", "1 000", True),
    # MV: math spans joined by "and"/"or"/"," are one answer, a set.
    ("\\{-2, 5\\}", "The roots are $x=-2$ and $x=5$.", True),
    ("\\{-2, 5\\}", "The roots are $x=-2$ and $x=4$.", False),
    # QW: multiple-choice letters in brackets.
    ("C", "The answer is (C).", True),
    ("\\text{(B)}", "The answer is (C).", False),
    # MV: an equation chain states its result: the answer is the value after the last "=" (a reward hack
    # otherwise: "12 + 30 = 41" graded on 12 + 30).
    ("42", "The answer is 12 + 30 = 41.", False),
    ("41", "The answer is 12 + 30 = 41.", True),
    ("42", "Final answer: 6 * 7 = 40", False),
    ("42", "The answer is $12+30$ = 42", True),
    # OAT: Markdown emphasis marks are not part of the answer (and never an operator); "2**3" stays a power.
    ("18", "The answer is **18**.", True),
    ("18", "Answer: **18**", True),
    ("18", "**18**", True),
    ("18", "= **18**", True),
    ("8", "We get 2**3 = 8", True),
    # MV: a number after ":", "(", "[" or "~" stands on its own ("Answer:42", "[42]"), not after a word's bracket.
    ("42", "Answer:42", True),
    ("42", "The answer is [42].", True),
    ("3", "f(3)", False),
    # OAT: "to" + words, "more than" + words are precision / unit trailers or prose, not hedges.
    ("3.14", "The answer is 3.14 to two decimal places.", True),
    ("42", "Rounded, the answer is 42 to the nearest dollar.", True),
    ("12", "Therefore she has 12 more than Tom.", True),
    # OAT: only the text after the last </think> counts, for every extractor (boxes included).
    ("5", "<think>\\boxed{5}</think> The answer is 6", False),
    ("6", "<think>\\boxed{5}</think> The answer is 6", True),
    # MV: plain numbers joined by "," / "and" are one answer, a set (after an anchor, or ending the response).
    ("1,2", "The answer is 1, 2", True),
    ("5,6", "The solutions are 5 and 6.", True),
    ("5", "The answer is 5 and 6", False),
    ("15", "In 2020, 15 people came.", True),  # prose before the last number is no list
    ("5", "The answer is 5, not 6.", True),
]


# ---------------------------------------------------------------------- templates and strict mode
def test_template_order_and_strict_mode():
    """The template decides the order (boxes first, <answer> first for r1); strict=True accepts only
    the template's own format (reward shaping), and with no template only boxes and <answer> tags."""
    lazy = GradingPool(num_workers=1)
    response = "<answer>2</answer> but then \\boxed{3}"
    assert grade(response, "3", pool=lazy).correct  # default: boxes first
    assert grade(response, "2", order=("answer_tag", "boxes", "freeform"), pool=lazy).correct
    free = "so the answer is $2$"
    assert grade(free, "2", pool=lazy).correct
    assert not grade(free, "2", strict=True, pool=lazy).formatted
    assert not grade("\\boxed{2}", "2", strict=True, order=("answer_tag", "boxes"), pool=lazy).formatted
    assert grade("<answer>2</answer>", "2", strict=True, order=("answer_tag", "boxes"), pool=lazy).correct
    # The old last-number fallback stays available by name.
    assert grade("it is 7 apples or so", "7", order=("boxes", "last_number"), pool=lazy).correct
    assert not lazy.started
    lazy.close()


def test_math_templates_use_free_form_extraction():
    """MATH-style templates fall back on free-form extraction, not on the last number."""
    from oat_env.data.math_data import TEMPLATE_EXTRACTORS

    for name in ("boxed", "qwen_math", "r1"):
        assert TEMPLATE_EXTRACTORS[name][-1] == "freeform" and "last_number" not in TEMPLATE_EXTRACTORS[name]
    assert TEMPLATE_EXTRACTORS["r1"][0] == "answer_tag" and TEMPLATE_EXTRACTORS["boxed"][0] == "boxes"


# ---------------------------------------------------------------------- numbers
NUMBERS = [
    ("2500", "\\boxed{2,500}", True),  # QW / MV: thousands commas
    ("2500", "\\boxed{2 500}", True),  # MV: thousands spaces
    ("2500000", "\\boxed{2 500 000}", True),
    ("2500.25", "\\boxed{2500,25}", True),  # MV: decimal comma, unambiguous (4+ digits before it)
    ("0.125", "\\boxed{0,125}", True),  # MV: decimal comma after a 0 (never a thousands separator)
    ("3.45", "\\boxed{3,45 €}", True),  # MV: currency sign after the number
    ("2500.25", "\\boxed{2,500.25€}", True),
    ("4", "\\boxed{4 m²}", True),  # MV: a unit with its square mark
    ("4", "\\boxed{4\\text{ cm}^2}", True),  # LM / QW: \text{} units are dropped
    ("75", "\\boxed{\\$75}", True),  # LM / QW: dollar signs
    ("0.3", "\\boxed{.3}", True),  # QW: leading-dot decimal
    ("30", "\\boxed{30.00}", True),
    ("-8", "\\boxed{−8}", True),  # unicode minus
    ("-7", "The answer is −7.", True),  # ... in free-form text too (U+2212)
    # LM / QW: dollar signs, escaped or not, in free-form text.
    ("18", "The answer is \\$18.", True),
    ("1200", "The answer is \\$1,200.", True),
    # MV: space thousands separators need 3-digit groups ("1 000" is 1000, "1 2" is not 12).
    ("12", "1 2", False),
    ("2,5", "\\boxed{2.5}", False),  # OAT: "2,5" is the list {2, 5}, not a decimal (ambiguous)
    ("1250", "\\boxed{1.25 thousand}", True),  # OAT: a scale word multiplies
    ("3000", "\\boxed{3\\times 10^{3}}", True),
    ("0.25", "\\boxed{25\\%}", True),  # MV / QW: percent equals its fraction ...
    ("25", "\\boxed{25\\%}", True),  # ... and the number itself
    ("25\\%", "\\boxed{0.25}", True),
    ("2.72", "\\boxed{2.71828}", False),  # MV: 6 decimal places, not the gold's precision
    ("\\frac{2}{3}", "\\boxed{0.6667}", False),
]

# ---------------------------------------------------------------------- reward hacks (issue 12)
HACKS = [
    # OAT (MV agrees): words after a number are another answer unless a unit or a scale word.
    ("3", "\\boxed{3 or more}", False),
    ("7", "\\boxed{7 is not the answer}", False),
    ("1", "\\boxed{1 million}", False),
    ("5", "\\boxed{5 thousand}", False),
    ("2", "\\boxed{2 dozen}", False),
    ("10", "\\boxed{10 times}", False),
    ("4", "\\boxed{4 squared}", False),
    ("1000000", "\\boxed{1 million}", True),
    ("2000", "\\boxed{2x10^3}", True),
    # The same hedges in free-form text.
    ("3", "The answer is 3 or more.", False),
    ("7", "The final answer is 7 is not the answer", False),
    ("10", "the answer is 10 times", False),
    ("5000", "the answer is 5 thousand", True),
    ("5", "so x = 5 is the solution.", True),  # plain "is" is prose, not a hedge
    # "to" before a number is a range; "not" before a number denies it.
    ("5", "the answer is 5 to 6", False),
    ("5", "\\boxed{5 to 6}", False),
    ("5", "I think the answer is not 5.", False),
    # Two different boxed answers are a set, never the last one alone.
    ("2", "\\boxed{1}\\boxed{2}", False),
]

# ---------------------------------------------------------------------- structures
STRUCTURES = [
    # QW / MV: a matrix is the same in any bracket style.
    (
        "\\begin{pmatrix} 5 & 6 \\\\ 7 & 8 \\end{pmatrix}",
        "\\boxed{\\begin{bmatrix} 5 & 6 \\\\ 7 & 8 \\end{bmatrix}}",
        True,
    ),
    (
        "\\begin{pmatrix} 5 \\\\ 6 \\end{pmatrix}",
        "\\boxed{\\left[\\begin{array}{c} 5 \\\\ 6 \\end{array}\\right]}",
        True,
    ),
    (
        "\\begin{pmatrix} 5 & 6 \\\\ 7 & 8 \\end{pmatrix}",
        "\\boxed{\\begin{bmatrix} 5 & 6 \\\\ 8 & 7 \\end{bmatrix}}",
        False,
    ),
    # OAT: an interval equals the inequality (or membership) describing it.
    ("[-3,4]", "\\boxed{x \\in [-3,4]}", True),
    ("[-3,4]", "\\boxed{-3 \\le x \\le 4}", True),
    ("-3 \\leq x \\leq 4", "\\boxed{[-3, 4]}", True),
    ("(-3,4)", "\\boxed{-3 < x < 4}", True),
    ("(-3,4)", "\\boxed{-3 \\le x \\le 4}", False),
    ("(-\\infty, 2)", "\\boxed{x < 2}", True),
    ("[2, \\infty)", "\\boxed{x \\geq 2}", True),
    ("(2, \\infty)", "\\boxed{x \\geq 2}", False),
    ("(2, \\infty)", "\\boxed{2 < x}", True),
    # MV: "!=" is \neq.
    ("x \\neq 4", "\\boxed{x != 4}", True),
    ("x \\ne 4", "\\boxed{x \\neq 4}", True),
    # OAT / MV: several boxes are one set of answers; a comma list is a set.
    ("3, 8", "\\boxed{3}\\boxed{8}", True),
    ("\\{3, 8\\}", "\\boxed{3}, \\boxed{8}", True),
    ("3, 8", "\\boxed{8} and \\boxed{3}", True),
    ("3, 8", "\\boxed{3, 9}", False),
    # OAT: a gold solution's boxes are read as a prediction's (boxed_answers): both the set {1, 2}.
    ("The solutions are \\boxed{1} and \\boxed{2}.", "\\boxed{1} and \\boxed{2}", True),
    ("The solutions are \\boxed{1} and \\boxed{2}.", "\\boxed{2}", False),
    # MV: solution sets of tuples, in any order.
    ("(1,5),(2,6)", "\\boxed{(2,6),(1,5)}", True),
    ("(1,5),(2,6)", "\\boxed{(2,6)}", False),
    # MV: "x = 5" and "5" are one answer (in both directions); assignments list a set or a tuple.
    ("6", "\\boxed{x = 6}", True),
    ("x=6", "\\boxed{6}", True),
    ("x=6", "\\boxed{x=7}", False),
    ("-4, 1", "\\boxed{x=-4 \\text{ or } x=1}", True),
    ("(2,-7)", "\\boxed{x=2, y=-7}", True),
    ("(2,-7)", "\\boxed{x=-7, y=2}", False),
    # MV: intervals compare brackets too.
    ("[2,6)", "\\boxed{(2,6]}", False),
    ("[0, 2] \\cup [5, 6]", "\\boxed{[5,6] \\cup [0,2]}", True),
]

# ---------------------------------------------------------------------- plain-ASCII math (calculator syntax)
ASCII = [
    # KAS-style: implicit multiplication, "^(...)" exponents, "**", function names without backslash.
    ("p(q+r)", "\\boxed{pq+pr}", True),
    ("x^(1/4)", "\\boxed{x^(0.25)}", True),
    ("x^{1/4}", "x^(1/4)", True),
    ("2.25", "\\boxed{1.5^2}", True),
    ("5x^2", "\\boxed{5x**2}", True),
    ("\\sqrt{y}", "\\boxed{sqrt(y)}", True),
    ("\\sqrt{7}", "\\boxed{sqrt(8)}", False),
    ("\\frac{\\pi}{4}", "\\boxed{pi/4}", True),
    ("e^{t}", "\\boxed{exp(t)}", True),
    ("\\cos x", "\\boxed{cos(x)}", True),
    ("20", "\\boxed{4(5)}", True),  # a number before "(" multiplies
    ("y^2-4", "\\boxed{(y-2)(y+2)}", True),
    ("y^2-4", "\\boxed{(y-2)*(y+2)}", True),
    ("\\frac{1}{y+2}", "\\boxed{1/(y+2)}", True),
    ("\\frac{1}{y+2}", "\\boxed{1/y+2}", False),
]

CATEGORIES = {
    "free_form": FREE_FORM,
    "numbers": NUMBERS,
    "hacks": HACKS,
    "structures": STRUCTURES,
    "ascii": ASCII,
}


@pytest.fixture(scope="module")
def pool():
    with GradingPool(num_workers=1, memory_limit=2 * 1024**3) as p:
        yield p


@pytest.mark.parametrize(
    ("gold", "response", "expected"),
    [
        pytest.param(*case, id=f"{name}-{i}")
        for name, cases in CATEGORIES.items()
        for i, case in enumerate(cases)
    ],
)
def test_convention(gold, response, expected, pool):
    result = grade(response, gold, pool=pool, timeout_s=10, cache=None)
    assert result.correct is expected, result


def test_all_categories_in_one_batch(pool):
    """Batched grading gives the same verdicts as one by one (de-duplication, cache, order)."""
    cases = [case for cases in CATEGORIES.values() for case in cases]
    results = grade_batch([r for _, r, _ in cases], [g for g, _, _ in cases], pool=pool, timeout_s=10)
    assert [r.correct for r in results] == [e for _, _, e in cases]


def test_decimal_comma_option(pool):
    """decimal_comma=False (lm-eval's / Qwen's reading: a comma only separates) turns it off."""
    assert grade("\\boxed{0,125}", "0.125", pool=pool, timeout_s=10).correct
    assert not grade(
        "\\boxed{0,125}", "0.125", pool=pool, timeout_s=10, decimal_comma=False, cache=None
    ).correct


# (gold, response, with gold_precision, without) -- golds stated rounded ("to two decimal places"): a prediction
# with more decimals that rounds (half away from zero) to the gold matches; integer golds are never rounded to,
# a less precise prediction never matches, and without the option math-verify's 6-decimal comparison holds.
GOLD_PRECISION = [
    ("3.14", "\\boxed{3.14159}", True, False),
    ("3.14", "\\boxed{3.145}", False, False),  # 3.145 rounds to 3.15
    ("-2.5", "\\boxed{-2.46}", True, False),  # halves away from zero: -2.46 -> -2.5
    ("0.33", "\\boxed{0.3333}", True, False),
    ("3.14", "\\boxed{3.1}", False, False),  # less precise than the gold: not rounded up to it
    ("3", "\\boxed{3.4}", False, False),  # an integer gold states no precision to round to (a reward hack)
    ("3.14", "\\boxed{3.14}", True, True),
    ("12.5\\%", "\\boxed{12.54\\%}", False, False),  # percentages stay with math-verify's reading
]


@pytest.mark.parametrize("gold,response,with_option,without", GOLD_PRECISION)
def test_gold_precision_option(gold, response, with_option, without, pool):
    assert grade(response, gold, pool=pool, timeout_s=10, gold_precision=True, cache=None).correct is with_option
    assert grade(response, gold, pool=pool, timeout_s=10, cache=None).correct is without


def test_grading_options_reach_the_math_env(tmp_path):
    import gymnasium as gym

    from oat_env.data.records import PromptRecord

    records = [PromptRecord(prompt="pi to two decimals?", answer="3.14", uid="p0")]
    for option, expected in ((True, 1.0), (False, 0.0)):
        env = gym.make("oat/MATH-v0", prompt_data=records, eval_prompt_data=records, template="boxed",
                       gold_precision=option)
        env.reset(seed=0)
        assert env.step("\\boxed{3.14159}")[1] == expected
        env.close()
    env = gym.make("oat/MATH-v0", prompt_data=records, eval_prompt_data=records, template="boxed", decimal_comma=False)
    env.reset(seed=0)
    assert env.step("\\boxed{3,14}")[1] == 0.0  # a comma only separates: a list, not 3.14
    env.close()


@pytest.mark.parametrize(
    "response",
    [
        "\\boxed{__import__('os').system('touch /tmp/oat_pwned')}",
        "answer: __import__('os').system('true')",
        "$exec('1')$",
        'The answer is eval("2")',
        "open('/etc/passwd').read()",
    ],
)
def test_free_form_never_executes(response, pool):
    result = grade(response, "2", pool=pool, timeout_s=10, cache=None)
    assert not result.correct


@pytest.mark.parametrize(
    "text",
    [
        "1 " * 500_000,
        "$" * 1_000_000,
        "\\(" * 500_000,
        "answer " * 150_000,
        "final answer is " * 60_000,
        "$1$ and " * 120_000,
        "(A) " * 250_000,
        "\\boxed{1} and " * 70_000,
        "1+" * 500_000,
        "x<" * 250 + "1",
        "**1** " * 20_000,
        "1+1 = " * 20_000,
        "1, " * 40_000,
        "1 to " * 25_000,
        "not 1 " * 20_000,
        "\\$1 " * 25_000,
        "[1" * 50_000,
        "**1 = 2, 3 and 4 to 5** " * 5_000,
    ],
)
def test_free_form_extraction_is_bounded(text):
    from oat_env.grading.extract import MATH_ORDER, extract_answer
    from oat_env.grading.rewrite import rewrite_answer

    start = time.perf_counter()
    answer = extract_answer(text, order=MATH_ORDER)
    if answer is not None:
        rewrite_answer(answer)
    assert time.perf_counter() - start < 2.0


def test_free_form_styles_grade_as_the_boxed_answer(pool):
    """The benchmark's MATH set (152 pairs: integers, fractions, roots, pi, intervals, tuples, sets, matrices,
    polynomials, equations, text) written in the field's free-form styles (Minerva's "The final answer is $x$. I hope
    it is correct.", "the answer is $x$", \\[x\\], $$x$$) gets exactly the verdicts of its \\boxed{} form."""
    import numpy as np

    from oat_agents.bench.grader import freeform_pairs, math_pairs

    free, boxed = freeform_pairs(), math_pairs(1, np.random.default_rng(0))
    assert [g for _, g in free] == [g for _, g in boxed]
    free_verdicts = grade_batch([p for p, _ in free], [g for _, g in free], pool=pool, timeout_s=10)
    boxed_verdicts = grade_batch([p for p, _ in boxed], [g for _, g in boxed], pool=pool, timeout_s=10)
    differ = [(free[i][0], free[i][1]) for i in range(len(free)) if free_verdicts[i].correct != boxed_verdicts[i].correct]
    assert not differ, differ
