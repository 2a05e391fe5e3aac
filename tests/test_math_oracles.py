"""Tests for oat_env.oracles.math (IntegerAnswerVerifier, MathVerifier)."""

from __future__ import annotations

import numpy as np
import pytest

from oat_env.oracles.base import RewardOracle
from oat_env.oracles.math import IntegerAnswerVerifier


def test_integer_verifier_scores_and_info():
    v = IntegerAnswerVerifier()
    assert isinstance(v, RewardOracle)
    responses = ["so \\boxed{42}", "The answer is 41.", "I think it is 1,234", "no idea", "#### -7"]
    refs = [42, "42", "1234", 3, "-7"]
    out = v.reward(["q"] * 5, responses, refs)
    np.testing.assert_array_equal(out.scores, [1.0, 0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(out.info["correct"], [True, False, True, False, True])
    np.testing.assert_array_equal(out.info["formatted"], [True, True, True, False, True])
    assert out.info["extracted_answer"].dtype == object
    assert list(out.info["extracted_answer"]) == ["42", "41", "1,234", None, "-7"]
    out.check_batch(5, "scores")


def test_integer_verifier_strict_and_order():
    strict = IntegerAnswerVerifier(strict=True)
    out = strict.reward(["q", "q"], ["it is 5", "<answer>5</answer>"], [5, 5])
    np.testing.assert_array_equal(out.info["correct"], [False, True])
    np.testing.assert_array_equal(out.info["formatted"], [False, True])
    tag_only = IntegerAnswerVerifier(order=["answer_tag"])
    out = tag_only.reward(["q", "q"], ["\\boxed{5}", "<answer> 5 </answer>"], [5, 5])
    np.testing.assert_array_equal(out.scores, [0.0, 1.0])
    custom = IntegerAnswerVerifier(reward_correct=2.0, reward_wrong=-1.0)
    np.testing.assert_array_equal(custom.reward(["q", "q"], ["5", "6"], [5, 5]).scores, [2.0, -1.0])


def test_integer_verifier_gold_solution_text_and_errors():
    v = IntegerAnswerVerifier()
    assert v.reward(["q"], ["\\boxed{18}"], ["She makes $18.\n#### 18"]).info["correct"][0]
    with pytest.raises(ValueError, match="references"):
        v.reward(["q"], ["1"], None)
    with pytest.raises(ValueError, match="batch sizes"):
        v.reward(["q"], ["1", "2"], [1, 2])
    with pytest.raises(ValueError, match="not an integer"):
        v.reward(["q"], ["1"], ["x/2"])
    with pytest.raises(TypeError, match="responses"):
        v.reward(["q"], [3], [3])
    with pytest.raises(ValueError, match="extractor"):
        IntegerAnswerVerifier(order=["nope"])


def test_integer_verifier_adversarial_is_fast():
    v = IntegerAnswerVerifier()
    huge = "{" * 1_000_000 + "\\boxed{" * 1000 + "9" * 5000
    out = v.reward(["q", "q"], [huge, "__import__('os').system('true')"], [1, 1])
    np.testing.assert_array_equal(out.scores, [0.0, 0.0])


# ---------------------------------------------------------------------- MathVerifier
def test_math_verifier_info_and_scores():
    from oat_env.grading import GradingPool
    from oat_env.oracles.math import MathVerifier

    with GradingPool(num_workers=1) as pool:
        v = MathVerifier(pool=pool, timeout_s=10)
        assert isinstance(v, RewardOracle)
        responses = ["\\boxed{\\frac{1}{2}}", "\\boxed{\\sqrt{4}}", "nothing here", "The answer is 18"]
        out = v.reward(["q"] * 4, responses, ["0.5", "2", "3", "#### 18"])
        np.testing.assert_array_equal(out.scores, [1.0, 1.0, 0.0, 1.0])
        np.testing.assert_array_equal(out.info["formatted"], [True, True, False, True])
        assert list(out.info["extracted_answer"]) == ["\\frac{1}{2}", "\\sqrt{4}", None, "18"]
        assert out.metrics["symbolic_checks"] == 1.0
        strict = MathVerifier(strict=True, pool=pool)
        assert strict.reward(["q"], ["it is 3"], ["3"]).scores[0] == 0.0
    with pytest.raises(ValueError, match="references"):
        MathVerifier().reward(["q"], ["1"], None)


# ---------------------------------------------------------------------- Countdown
def test_countdown_expression_parser():
    from fractions import Fraction

    from oat_env.oracles.countdown import ExpressionError, evaluate_expression

    assert evaluate_expression("(3 + 5) * 2 - 6 / 4") == (Fraction(29, 2), [3, 5, 2, 6, 4])
    assert evaluate_expression("8 ÷ 2 × 3")[0] == 12
    for bad in ["__import__('os').system('x')", "2 ** 3", "-3 + 5", "(1 + 2", "1 / 0", "", "1 2", "9" * 20,
                "(" * 100 + "1" + ")" * 100]:
        with pytest.raises(ExpressionError):
            evaluate_expression(bad)


def test_countdown_check_solution():
    from oat_env.oracles.countdown import check_solution

    assert check_solution("(25 - 5) * 4", [25, 5, 4, 7], 80)
    assert check_solution("(25 - 5) * 4 = 80", [25, 5, 4, 7], 80)
    assert not check_solution("(25 - 5) * 4 = 81", [25, 5, 4, 7], 80)
    assert not check_solution("(25 - 5) * 4 * 1", [25, 5, 4, 7], 80)  # 1 not available
    assert not check_solution("5 * 4 * 4", [25, 5, 4, 7], 80)  # 4 used twice
    assert check_solution("5 * 4 * 4", [4, 5, 4], 80)


def test_generate_countdown_solvable_and_seeded():
    from oat_env.oracles.countdown import check_solution, generate_countdown, generate_countdown_with_solution

    a = [generate_countdown(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(0)
    for _ in range(200):
        numbers, target, solution = generate_countdown_with_solution(rng, num_numbers=4, max_target=500)
        assert len(numbers) == 4 and 10 <= target <= 500 and all(1 <= n <= 100 for n in numbers)
        assert check_solution(solution, numbers, target)
    assert generate_countdown(np.random.default_rng(3))[:2] == generate_countdown_with_solution(
        np.random.default_rng(3))[:2]
    with pytest.raises(ValueError, match="num_numbers"):
        generate_countdown(np.random.default_rng(0), num_numbers=1)


def test_countdown_verifier(tmp_path):
    from oat_env.oracles.countdown import CountdownVerifier, countdown_reference

    ref = countdown_reference([25, 5, 4, 7], 80)
    marker = tmp_path / "pwned"
    responses = ["Let me think.\n<answer>(25 - 5) * 4</answer>", "I try\n(25-5)*4", "<answer>25 * 4</answer>",
                 "", f"<answer>__import__('os').system('touch {marker}')</answer>"]
    v = CountdownVerifier(format_score=0.1)
    assert isinstance(v, RewardOracle)
    out = v.reward(["q"] * 5, responses, [ref] * 4 + [{"numbers": [25, 5, 4, 7], "target": 80}])
    np.testing.assert_allclose(out.scores, [1.0, 1.0, 0.1, 0.0, 0.1])
    np.testing.assert_array_equal(out.info["correct"], [True, True, False, False, False])
    np.testing.assert_array_equal(out.info["formatted"], [True, True, True, False, True])
    assert out.info["extracted_answer"][0] == "(25 - 5) * 4"
    assert not marker.exists()
    with pytest.raises(ValueError, match="countdown reference"):
        v.reward(["q"], ["1"], ['{"numbers": [1]}'])


def test_integer_verifier_ignores_the_scratch_work_before_think():
    from oat_env.oracles.math import IntegerAnswerVerifier

    result = IntegerAnswerVerifier().reward(["q"] * 3, ["<think>\\boxed{5}</think> 6", "<think>6</think>5", "5"],
                                            [5, 5, 5])
    assert list(result.info["correct"]) == [False, True, True]
