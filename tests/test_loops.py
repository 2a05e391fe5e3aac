"""The loops' shared bookkeeping: ``num_eval_prompts=None`` (every held-out prompt) in each evaluation path, and
the multi-turn loop on the bookkeeper (its logging, evaluation and refusals)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

import oat_env  # noqa: F401  (registers the env ids)
from oat_agents.loops import LoopConfig, check_eval_prompts, evaluate, evaluate_multiturn, find_multiturn_task
from oat_agents.loops.multiturn import run_multiturn_rl

ARITHMETIC = {"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare", "eval_fraction": 0.4}
HELD_OUT = 33  # distinct held-out single-digit sums at eval_fraction 0.4


class EchoAgent:
    """Answers every prompt with a fixed string and counts the prompts it was asked (no model needed)."""

    def __init__(self, answer: str = "0"):
        self.answer, self.asked = answer, 0

    def generate_greedy(self, prompts: list) -> list[str]:
        self.asked += len(prompts)
        return [self.answer] * len(prompts)


def test_loop_config_accepts_none_and_still_refuses_negative_counts() -> None:
    assert LoopConfig(num_eval_prompts=None).num_eval_prompts is None
    with pytest.raises(ValueError, match="num_eval_prompts must be >= 0"):
        LoopConfig(num_eval_prompts=-1)


def test_single_turn_evaluation_of_none_scores_every_held_out_prompt(tmp_path: Path) -> None:
    env = gym.make_vec("oat/Arithmetic-v0", num_envs=2, **ARITHMETIC)
    config = LoopConfig(num_eval_prompts=None)
    check_eval_prompts(env, config)  # a listable held-out split: accepted
    agent = EchoAgent()
    metrics = evaluate(env, agent, config, queries=0, dump_dir=tmp_path)
    assert agent.asked == HELD_OUT and 0.0 <= metrics["eval/accuracy"] <= 1.0
    dump = json.loads((tmp_path / "queries_00000000.json").read_text())
    assert len(dump["samples"]) == HELD_OUT


def test_check_eval_prompts_refuses_none_without_a_listable_held_out_split() -> None:
    config = LoopConfig(num_eval_prompts=None)
    with pytest.raises(ValueError, match="no held-out prompts"):
        check_eval_prompts(gym.make_vec("oat/Arithmetic-v0", num_envs=1, **{**ARITHMETIC, "eval_fraction": 0.0}), config)
    unbounded = gym.make_vec("oat/Arithmetic-v0", num_envs=1, min_digits=3, max_digits=6)
    assert unbounded.unwrapped.num_eval_prompts is None
    with pytest.raises(ValueError, match="unbounded source: pass a number"):
        check_eval_prompts(unbounded, config)
    check_eval_prompts(unbounded, LoopConfig(num_eval_prompts=5))  # a count is fine
    check_eval_prompts(unbounded, LoopConfig(num_eval_prompts=None, eval_query_interval=0))  # no evaluation


def test_multi_turn_evaluation_of_none_runs_every_held_out_problem() -> None:
    env = gym.make_vec("oat/MathMultiTurn-v0", num_envs=2, max_turns=2, **ARITHMETIC)
    agent = EchoAgent("x")  # never an answer: every episode runs both turns
    metrics = evaluate_multiturn(find_multiturn_task(env), agent, None)
    assert agent.asked == 2 * HELD_OUT
    assert metrics["eval/success_rate"] == 0.0 and metrics["eval/mean_turns"] == 2.0 and "eval/generate_s" in metrics


def test_multi_turn_loop_refuses_checkpoint_options(tmp_path: Path) -> None:
    env = gym.make_vec("oat/MathMultiTurn-v0", num_envs=2, **ARITHMETIC)
    for options in ({"resume": True}, {"save_every": 1}):
        with pytest.raises(ValueError, match="does not checkpoint yet"):
            run_multiturn_rl(env, EchoAgent(), LoopConfig(log_dir=str(tmp_path), progress=False, **options))
