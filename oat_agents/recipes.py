"""The CPU learning recipes: one definition behind ``make demo``, the examples, the slow learning tests and
``oat-bench seeds`` (which measures their spread over seeds for the README).

Each recipe starts from a tiny character-level Llama, briefly SFT-warmed on single-digit additions (33
held-out problems never drawn in training), and learns online:

=============  ==========================================================================================
``demo``       online DPO on ``oat/Arithmetic-Duel-v0``, 32,768 queries (``make demo``)
``dr_grpo``    Dr.GRPO on ``oat/Arithmetic-v0``, 16 prompts × group of 8 per round, 16,384 queries
``multiturn``  turn-level REINFORCE on ``oat/MathMultiTurn-v0`` (3 attempts), 12,288 queries
``sea``        SEA (BAI-TS over a 10-member ERM, 4 candidates) on the demo's task, 32,768 queries
``trl_grpo``   TRL's own ``GRPOTrainer`` (Dr.GRPO loss) on ``oat/Arithmetic-v0`` through
               ``oat_env.integrations.trl`` (``prompt_dataset`` + ``reward_function``), 256 steps × 128
``reasoning_gym``  Dr.GRPO on ``oat/ReasoningGym-v0`` (reasoning-gym's ``basic_arithmetic``, two one-digit
               terms, scored by reasoning-gym's own ``score_answer``), 16,384 queries
=============  ==========================================================================================

:func:`run_recipe` runs one seed and returns a :class:`RecipeResult`: the held-out headline metric at every
evaluation (greedy accuracy, or success within ``max_turns`` for ``multiturn``), its ``start`` (the warm
start) and ``final`` (mean of the last two evaluations: single evaluations on 33 problems are noisy) and a
few recipe-specific extras.

Why several seeds. Floating-point kernels differ between CPUs (and thread counts), and a 0.1M-parameter
policy turns a last-bit difference into another trajectory: the same seed gives the same numbers twice on
one machine, not on another. So a claim about a recipe is a claim about its distribution over seeds, which
:data:`MEASURED` records (written by ``oat-bench seeds``; the README and the slow tests quote it).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Single-digit addition ("7+8=" -> "15"): learnable in seconds on CPU; 40 % of the 100 problems are held out
# (33 distinct ones), so evaluation measures generalisation, not memorisation.
ARITHMETIC = {"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare", "eval_fraction": 0.4}
MULTITURN = {**ARITHMETIC, "max_turns": 3, "feedback_wrong": "wrong", "feedback_unformatted": "wrong"}
NUM_EVAL_PROMPTS = 33  # all the held-out single-digit problems
# reasoning-gym's "Calculate 5 + -3." (two one-digit terms, + only, negatives allowed: answers -18..18);
# the held-out prompts are items of a disjoint generator-seed range (oat_env.integrations.reasoning_gym).
REASONING_GYM = {"task": "basic_arithmetic", "template": "plain", "reward": "binary", "eval_size": 64,
                 "task_config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"],
                                 "allow_parentheses": False}}
RECIPES: tuple[str, ...] = ("demo", "dr_grpo", "multiturn", "sea", "trl_grpo", "reasoning_gym")
HEADLINE = {"demo": "eval/accuracy", "dr_grpo": "eval/accuracy", "multiturn": "eval/success_rate",
            "sea": "eval/accuracy", "trl_grpo": "eval/accuracy", "reasoning_gym": "eval/accuracy"}


# The distribution over seeds of each recipe's headline metric, as ``oat-bench seeds --recipe NAME`` printed it
# (``(mean, sd, min, max)`` over the seeds; ``final`` = mean of the last two evaluations). The README quotes
# these; ``make demo`` prints its own run beside them; the slow tests choose their bounds from them.
_MACHINE = "2-core x86-64 Intel Xeon, 1 torch thread per run"
MEASURED: dict[str, dict[str, Any]] = {
    "demo": {"seeds": 10, "command": "oat-bench seeds --recipe demo --seeds 0 1 2 3 4 5 6 7 8 9", "machine": _MACHINE,
             "start": (0.406, 0.117, 0.212, 0.576), "final": (0.780, 0.096, 0.606, 0.924),
             "gain": (0.374, 0.158, 0.182, 0.652), "anytime_regret_start": (0.259, 0.056, 0.190, 0.364),
             "anytime_regret_final": (0.092, 0.041, 0.031, 0.165)},
    "dr_grpo": {"seeds": 10, "command": "oat-bench seeds --recipe dr_grpo --seeds 0 1 2 3 4 5 6 7 8 9",
                "machine": _MACHINE, "start": (0.406, 0.117, 0.212, 0.576), "final": (0.714, 0.143, 0.470, 0.894),
                "gain": (0.308, 0.138, 0.121, 0.470), "train_first": (0.358, 0.031, 0.298, 0.407),
                "train_last": (0.681, 0.038, 0.613, 0.733)},
    "multiturn": {"seeds": 10, "command": "oat-bench seeds --recipe multiturn --seeds 0 1 2 3 4 5 6 7 8 9",
                  "machine": _MACHINE, "start": (0.406, 0.117, 0.212, 0.576), "final": (0.661, 0.106, 0.561, 0.894),
                  "gain": (0.255, 0.155, 0.015, 0.470), "train_first": (0.404, 0.022, 0.376, 0.449),
                  "train_last": (0.644, 0.035, 0.572, 0.699)},
    "sea": {"seeds": 10, "command": "oat-bench seeds --recipe sea --seeds 0 1 2 3 4 5 6 7 8 9", "machine": _MACHINE,
            "start": (0.406, 0.117, 0.212, 0.576), "final": (0.702, 0.092, 0.470, 0.803),
            "gain": (0.295, 0.097, 0.152, 0.515), "anytime_regret_start": (0.259, 0.056, 0.190, 0.364),
            "anytime_regret_final": (0.126, 0.039, 0.081, 0.217), "rm_accuracy": (0.708, 0.071, 0.575, 0.773)},
    "trl_grpo": {"seeds": 10, "command": "oat-bench seeds --recipe trl_grpo --seeds 0 1 2 3 4 5 6 7 8 9",
                 "machine": _MACHINE, "start": (0.406, 0.117, 0.212, 0.576), "final": (0.656, 0.087, 0.530, 0.803),
                 "gain": (0.250, 0.178, 0.015, 0.591), "train_first": (0.381, 0.017, 0.361, 0.422),
                 "train_last": (0.595, 0.025, 0.551, 0.623)},
    "reasoning_gym": {"seeds": 10, "command": "oat-bench seeds --recipe reasoning_gym --seeds 0 1 2 3 4 5 6 7 8 9",
                      "machine": _MACHINE, "start": (0.330, 0.134, 0.141, 0.547), "final": (0.529, 0.163, 0.164, 0.750),
                      "gain": (0.199, 0.108, 0.023, 0.383), "train_first": (0.209, 0.077, 0.108, 0.375),
                      "train_last": (0.387, 0.105, 0.127, 0.524)},
}


# The same for ``oat-bench seeds --recipe NAME --asynchronous`` (LoopConfig.asynchronous: the actor one update behind
# the learner; dr_grpo with tis_cap 2). Within noise of the synchronous rows above: the differences of the final
# means (demo −0.025, dr_grpo +0.003) are below one standard error of a difference of two 10-seed means (0.06-0.07).
MEASURED_ASYNC: dict[str, dict[str, Any]] = {
    "demo": {"seeds": 10, "command": "oat-bench seeds --recipe demo --asynchronous --seeds 0 1 2 3 4 5 6 7 8 9",
             "machine": _MACHINE, "start": (0.406, 0.117, 0.212, 0.576), "final": (0.755, 0.153, 0.515, 0.985),
             "gain": (0.348, 0.174, 0.045, 0.515), "anytime_regret_start": (0.259, 0.056, 0.190, 0.364),
             "anytime_regret_final": (0.103, 0.065, 0.006, 0.204)},
    "dr_grpo": {"seeds": 10, "command": "oat-bench seeds --recipe dr_grpo --asynchronous --seeds 0 1 2 3 4 5 6 7 8 9",
                "machine": _MACHINE, "start": (0.406, 0.117, 0.212, 0.576), "final": (0.717, 0.135, 0.455, 0.939),
                "gain": (0.311, 0.151, 0.106, 0.636), "train_first": (0.347, 0.035, 0.293, 0.413),
                "train_last": (0.668, 0.054, 0.558, 0.743)},
}


@dataclass
class RecipeResult:
    """One seed of one recipe."""

    recipe: str
    seed: int
    metric: str
    """The headline held-out metric (``eval/accuracy``, or ``eval/success_rate`` for ``multiturn``)."""
    queries: list[int]
    """Oracle queries at each evaluation."""
    values: list[float]
    """The headline metric at each evaluation (the first one is the warm start)."""
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)
    """Recipe-specific numbers (e.g. ``train_first``/``train_last`` of the sampled training accuracy)."""

    @property
    def start(self) -> float:
        return self.values[0]

    @property
    def final(self) -> float:
        """Mean of the last two evaluations."""
        return float(np.mean(self.values[-2:]))

    @property
    def gain(self) -> float:
        return self.final - self.start

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "start": self.start, "final": self.final, "gain": self.gain}


# ---------------------------------------------------------------------------------------------------------
# The recipes
# ---------------------------------------------------------------------------------------------------------


def demo_config(queries: int = 32768, seed: int = 0, log_dir: str = "runs/demo", warmup_steps: int = 100,
                progress: bool = True, asynchronous: bool = False) -> Any:
    """``make demo``'s :class:`~oat_agents.cli.train.TrainConfig`: online DPO of a width-64, 2-layer tiny Llama,
    32 duels per round, 2 passes over each round's pairs at lr 1e-4, evaluation every 1/8 of the budget
    (``asynchronous``: ``--loop.asynchronous``, the actor one round ahead of the learner)."""
    from oat_agents.agents.dap import DAPAgentConfig
    from oat_agents.algorithms.dap import DAPConfig
    from oat_agents.cli.train import TrainConfig
    from oat_agents.learners.engine import LearnerConfig
    from oat_agents.loops.bookkeeping import LoopConfig
    from oat_agents.tiny import WarmupConfig

    return TrainConfig(
        env_id="oat/Arithmetic-Duel-v0", env_kwargs=json.dumps(ARITHMETIC), num_envs=32, model="tiny-char-llama",
        tiny_hidden=64, tiny_layers=2, tiny_heads=2, seed=seed,
        warmup=WarmupConfig(steps=warmup_steps, batch_size=32, learning_rate=3e-3, seed=seed),
        agent=DAPAgentConfig(num_samples=2, temperature=1.0, max_new_tokens=4, max_seq_length=16, learn_epochs=2,
                             dap=DAPConfig(loss_type="dpo", beta=0.1)),
        learner=LearnerConfig(zero_stage=0, learning_rate=1e-4, micro_batch_size=32, max_grad_norm=1.0),
        loop=LoopConfig(total_queries=queries, sync_params_every=1, eval_query_interval=max(queries // 8, 32),
                        num_eval_prompts=NUM_EVAL_PROMPTS, log_dir=log_dir, progress=progress,
                        asynchronous=asynchronous),
    )


def tiny_policy_and_learner(source: Any, seed: int, warmup_steps: int, lr: float, micro: int,
                            progress: bool = False) -> tuple[Any, Any, dict]:
    """A warmed-up tiny Llama (width 64, 2 layers) as the sampler (HFPolicy) and a copy as the DeepSpeed learner."""
    from oat_agents.learners import LearnerConfig, LearnerEngine
    from oat_agents.policies.hf import HFPolicy
    from oat_agents.tiny import CharTokenizer, WarmupConfig, build_tiny_llama, sft_warmup

    tokenizer = CharTokenizer()
    model = build_tiny_llama(len(tokenizer), hidden=64, layers=2, heads=2, seed=seed)
    warm = sft_warmup(model, tokenizer, source, WarmupConfig(steps=warmup_steps, batch_size=32, learning_rate=3e-3,
                                                             seed=seed), progress=progress)
    policy = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu")
    learner = LearnerEngine(model, LearnerConfig(zero_stage=0, learning_rate=lr, micro_batch_size=micro, seed=seed))
    return policy, learner, warm


def run_single_turn(seed: int, log_dir: str, queries: int = 16384, warmup_steps: int = 100,
                    progress: bool = False, asynchronous: bool = False) -> Any:
    """Dr.GRPO on oat/Arithmetic-v0: 16 prompts × group of 8 per round, 2 epochs × 2 mini-batches, lr 3e-4
    (``asynchronous``: the actor one round ahead, with the TIS correction ``tis_cap = 2``)."""
    from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
    from oat_agents.algorithms.pg import PGConfig
    from oat_agents.learners import init_distributed
    from oat_agents.loops.bookkeeping import LoopConfig
    from oat_agents.loops.group_rl import make_grouped_vec, run_online_rl

    init_distributed()
    num_prompts, group = 16, 8
    env = make_grouped_vec("oat/Arithmetic-v0", num_prompts=num_prompts, group_size=group, **ARITHMETIC)
    policy, learner, _ = tiny_policy_and_learner(env.unwrapped.task.source, seed, warmup_steps, 3e-4,
                                                 num_prompts * group, progress)
    agent = GroupRLAgent(policy, learner, GroupRLAgentConfig(
        num_samples=group, temperature=1.0, max_new_tokens=3, max_seq_length=16, learn_epochs=2,
        num_mini_batches=2, seed=seed, pg=PGConfig(advantage_estimator="dr_grpo", loss_agg="constant",
                                                   tis_cap=2.0 if asynchronous else None),
    ))
    config = LoopConfig(total_queries=queries, eval_query_interval=max(queries // 8, 1),
                        num_eval_prompts=NUM_EVAL_PROMPTS, log_dir=log_dir, seed=seed, progress=progress,
                        asynchronous=asynchronous)
    return run_online_rl(env, agent, config)


class _ReasoningGymAnswers:
    """The SFT warm-up's view of a reasoning-gym prompt source: records whose ``reference`` is the plain answer
    (the env's records carry a JSON reference to the reasoning-gym entry instead)."""

    def __init__(self, source: Any):
        self.source = source

    def sample(self, rng: np.random.Generator) -> Any:
        import dataclasses

        record = self.source.sample(rng)
        return dataclasses.replace(record, reference=str(json.loads(record.answer)["answer"]))


def run_reasoning_gym(seed: int, log_dir: str, queries: int = 16384, warmup_steps: int = 150,
                      progress: bool = False) -> Any:
    """Dr.GRPO on oat/ReasoningGym-v0 (:data:`REASONING_GYM`), as :func:`run_single_turn`: 16 prompts × group of 8
    per round, 2 epochs × 2 mini-batches, lr 3e-4; the tiny Llama is SFT-warmed on the env's training items."""
    from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
    from oat_agents.algorithms.pg import PGConfig
    from oat_agents.learners import init_distributed
    from oat_agents.loops.bookkeeping import LoopConfig
    from oat_agents.loops.group_rl import make_grouped_vec, run_online_rl

    init_distributed()
    num_prompts, group = 16, 8
    env = make_grouped_vec("oat/ReasoningGym-v0", num_prompts=num_prompts, group_size=group, dataset_seed=seed,
                           **REASONING_GYM)
    policy, learner, _ = tiny_policy_and_learner(_ReasoningGymAnswers(env.unwrapped.task.source), seed,
                                                 warmup_steps, 3e-4, num_prompts * group, progress)
    agent = GroupRLAgent(policy, learner, GroupRLAgentConfig(
        num_samples=group, temperature=1.0, max_new_tokens=4, max_seq_length=32, learn_epochs=2,
        num_mini_batches=2, seed=seed, pg=PGConfig(advantage_estimator="dr_grpo", loss_agg="constant"),
    ))
    config = LoopConfig(total_queries=queries, eval_query_interval=max(queries // 8, 1),
                        num_eval_prompts=REASONING_GYM["eval_size"], log_dir=log_dir, seed=seed, progress=progress)
    return run_online_rl(env, agent, config)


def run_multi_turn(seed: int, log_dir: str, queries: int = 12288, warmup_steps: int = 100,
                   progress: bool = False) -> Any:
    """Turn-level REINFORCE on oat/MathMultiTurn-v0 (arithmetic source, up to 3 attempts, γ = 0.9)."""
    import gymnasium as gym

    import oat_env  # noqa: F401  (registers the env ids)
    from oat_agents.agents.multiturn import MultiTurnAgent, MultiTurnAgentConfig
    from oat_agents.algorithms.pg import PGConfig
    from oat_agents.learners import init_distributed
    from oat_agents.loops.bookkeeping import LoopConfig
    from oat_agents.loops.multiturn import run_multiturn_rl

    init_distributed()
    num_envs = 32
    env = gym.make_vec("oat/MathMultiTurn-v0", num_envs=num_envs, **MULTITURN)
    policy, learner, _ = tiny_policy_and_learner(env.unwrapped.task.source, seed, warmup_steps, 3e-4, num_envs,
                                                 progress)
    agent = MultiTurnAgent(policy, learner, MultiTurnAgentConfig(
        temperature=1.0, max_new_tokens=3, max_seq_length=64, learn_epochs=2, num_mini_batches=2,
        turn_gamma=0.9, min_turns_to_learn=2 * num_envs, seed=seed,
        pg=PGConfig(advantage_estimator="reinforce", loss_agg="token_mean"),
    ))
    config = LoopConfig(total_queries=queries, eval_query_interval=max(queries // 4, 1),
                        num_eval_prompts=NUM_EVAL_PROMPTS, log_dir=log_dir, seed=seed, progress=progress)
    return run_multiturn_rl(env, agent, config)


def run_trl_grpo(seed: int, log_dir: str, steps: int = 256,
                 warmup_steps: int = 100) -> tuple[list[dict[str, float]], list[float]]:
    """TRL's ``GRPOTrainer`` from the same SFT-warmed tiny Llama, with our env as its data and reward: prompts from
    ``prompt_dataset("oat/Arithmetic-v0")`` (the env's seeded stream), rewards from ``reward_function`` (the env's
    verifier), Dr.GRPO loss, 16 prompts × 8 completions per step, lr 5e-4 (TRL's linear decay), no KL. Returns the
    greedy held-out accuracy on the 33 held-out problems before training and every ``steps / 4`` steps, and the
    mean sampled training reward TRL logged every 16 steps."""
    import gymnasium as gym
    import torch
    import trl
    from transformers import TrainerCallback

    import oat_env  # noqa: F401  (registers the env ids)
    from oat_agents.policies.base import SamplingParams
    from oat_agents.policies.hf import HFPolicy
    from oat_agents.tiny import CharTokenizer, WarmupConfig, build_tiny_llama, sft_warmup
    from oat_env.integrations.trl import prompt_dataset, reward_function

    env_id = "oat/Arithmetic-v0"
    env = gym.make_vec(env_id, num_envs=1, **ARITHMETIC)
    tokenizer = CharTokenizer()
    model = build_tiny_llama(len(tokenizer), hidden=64, layers=2, heads=2, seed=seed)
    sft_warmup(model, tokenizer, env.unwrapped.task.source,
               WarmupConfig(steps=warmup_steps, batch_size=32, learning_rate=3e-3, seed=seed))
    held_out = env.unwrapped.eval_prompts(NUM_EVAL_PROMPTS)
    evals: list[dict[str, float]] = []

    def evaluate(step: int) -> None:
        was_training = model.training
        texts = HFPolicy(model, tokenizer, device="cpu").generate(
            held_out, n=1, sampling=SamplingParams(temperature=0.0, max_new_tokens=3)).texts
        evals.append({"misc/queries": step * 128, **{f"eval/{k}": v for k, v in
                      env.unwrapped.evaluate([t[0] for t in texts], held_out).items() if isinstance(v, float)}})
        model.train(was_training)

    class EvaluateEveryQuarter(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step % max(steps // 4, 1) == 0:
                evaluate(state.global_step)

    evaluate(0)
    config = trl.GRPOConfig(
        output_dir=log_dir, num_generations=8, per_device_train_batch_size=128, max_completion_length=3,
        max_steps=steps, learning_rate=5e-4, loss_type="dr_grpo", beta=0.0, temperature=1.0, seed=seed,
        logging_steps=16, report_to=[], use_cpu=True, bf16=False, activation_checkpointing=False,
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = trl.GRPOTrainer(model=model, reward_funcs=reward_function(env_id, **ARITHMETIC), args=config,
                              train_dataset=prompt_dataset(env_id, n=steps * 16, seed=seed, **ARITHMETIC),
                              processing_class=tokenizer, callbacks=[EvaluateEveryQuarter()])
    torch.manual_seed(seed)
    trainer.train()
    env.close()
    return evals, [float(h["reward"]) for h in trainer.state.log_history if "reward" in h]


def training_curve(log_dir: str, key: str) -> tuple[list[float], list[float]]:
    """``(queries, value)`` of a training metric from ``<log_dir>/metrics.jsonl``."""
    rows = [json.loads(line) for line in (Path(log_dir) / "metrics.jsonl").read_text().splitlines()]
    points = [(r["queries"], r[key]) for r in rows if key in r]
    return [q for q, _ in points], [v for _, v in points]


def first_last(values: list[float], k: int) -> tuple[float, float]:
    """Means of the first and the last ``k`` values."""
    return float(np.mean(values[:k])), float(np.mean(values[-k:]))


ASYNC_RECIPES = ("demo", "dr_grpo")
"""The recipes that run with ``asynchronous=True`` (``oat-bench seeds --asynchronous``)."""


def run_recipe(recipe: str, seed: int, log_dir: str, progress: bool = False, asynchronous: bool = False
               ) -> RecipeResult:
    """Run one seed of ``recipe`` (logs under ``log_dir``) in this process; ``asynchronous``: with
    ``LoopConfig.asynchronous`` (:data:`ASYNC_RECIPES` only)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {RECIPES}")
    if asynchronous and recipe not in ASYNC_RECIPES:
        raise ValueError(f"recipe {recipe!r} has no asynchronous variant; choose from {ASYNC_RECIPES}")
    start = time.perf_counter()
    extra: dict[str, float] = {}
    if recipe == "demo":
        from oat_agents.cli.train import train

        summary = train(demo_config(seed=seed, log_dir=log_dir, progress=progress, asynchronous=asynchronous))
        evals = summary.result.evals
        extra = {"cumulative_regret": float(summary.result.cumulative_regret),
                 "anytime_regret_start": evals[0]["eval/anytime_regret"],
                 "anytime_regret_final": float(np.mean([e["eval/anytime_regret"] for e in evals[-2:]]))}
    elif recipe == "dr_grpo":
        evals = run_single_turn(seed, log_dir, progress=progress, asynchronous=asynchronous).evals
        _, train_accuracy = training_curve(log_dir, "actor/accuracy")
        extra["train_first"], extra["train_last"] = first_last(train_accuracy, 8)
    elif recipe == "multiturn":
        evals = run_multi_turn(seed, log_dir, progress=progress).evals
        _, success = training_curve(log_dir, "actor/episode_success")
        extra["train_first"], extra["train_last"] = first_last(success, max(len(success) // 4, 1))
        extra["accuracy_le_success"] = float(all(e["eval/accuracy"] <= e["eval/success_rate"] for e in evals))
    elif recipe == "reasoning_gym":
        evals = run_reasoning_gym(seed, log_dir, progress=progress).evals
        _, train_accuracy = training_curve(log_dir, "actor/accuracy")
        extra["train_first"], extra["train_last"] = first_last(train_accuracy, 8)
    elif recipe == "trl_grpo":
        evals, train_reward = run_trl_grpo(seed, log_dir)
        extra["train_first"], extra["train_last"] = first_last(train_reward, 2)
    else:  # sea
        from oat_agents.bench.regret import BenchConfig, run_one, warm_model

        cfg = BenchConfig(seeds=[seed], methods=["bai_ts"], out=log_dir)
        model, tokenizer = warm_model(cfg, seed)
        run = run_one("bai_ts", cfg, seed, model, tokenizer, Path(log_dir))
        evals = [{"misc/queries": q, "eval/accuracy": a, "eval/anytime_regret": r}
                 for q, a, r in zip(run["eval_queries"], run["accuracy"], run["anytime_regret"])]
        extra = {"anytime_regret_start": run["anytime_regret"][0],
                 "anytime_regret_final": float(np.mean(run["anytime_regret"][-2:])),
                 "rm_accuracy": run.get("eval/rm_accuracy", float("nan"))}
    metric = HEADLINE[recipe]
    return RecipeResult(recipe, seed, metric, [int(e["misc/queries"]) for e in evals],
                        [float(e[metric]) for e in evals], time.perf_counter() - start, extra)


def run_recipe_job(recipe: str, seed: int, log_root: str, asynchronous: bool = False) -> dict[str, Any]:
    """:func:`run_recipe` for a worker process: logs in ``<log_root>/<recipe>_seed<k>``, a picklable dict back.

    A rerun into the same ``log_root`` starts that run's logs afresh: the logger appends to ``metrics.jsonl``,
    and the training curves read from it must be this run's alone."""
    run_dir = Path(log_root) / f"{recipe}{'_async' if asynchronous else ''}_seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    return run_recipe(recipe, seed, str(run_dir), asynchronous=asynchronous).to_dict()


def run_seeds(recipe: str, seeds: list[int], log_root: str, workers: int = 2, threads: int = 1,
              on_result: Any = None, asynchronous: bool = False) -> list[dict[str, Any]]:
    """Every seed of ``recipe`` on ``workers`` processes; results in the order of ``seeds``."""
    from oat_agents.parallel import run_in_processes

    done: dict[int, dict[str, Any]] = {}
    jobs = [(recipe, s, log_root, asynchronous) for s in seeds]
    for (_, seed, _, _), result in run_in_processes(run_recipe_job, jobs, workers, threads):
        done[seed] = result
        if on_result is not None:
            on_result(result)
    return [done[s] for s in seeds]


def compare_with_measured(recipe: str, start: float, final: float) -> str:
    """This run's warm start, final value and gain beside the range :data:`MEASURED` over seeds."""
    m = MEASURED[recipe]
    metric = HEADLINE[recipe].split("/")[1]

    def where(value: float, stats: tuple[float, float, float, float]) -> str:
        return "inside" if stats[2] - 1e-9 <= value <= stats[3] + 1e-9 else "OUTSIDE"

    rows = [f"held-out {metric}: this run vs {m['seeds']} measured seeds ({m['command']}; {m['machine']})",
            f"{'':<8}{'this run':>10}   {'measured mean ± sd':>20}   {'range':>13}"]
    for name, value in (("start", start), ("final", final), ("gain", final - start)):
        mean, sd, lo, hi = m[name]
        sign = "+" if name == "gain" else ""
        rows.append(f"{name:<8}{value:>{sign}10.3f}   {mean:>{sign}12.3f} ± {sd:.3f}   {lo:{sign}.2f} – {hi:{sign}.2f}  "
                    f"({where(value, m[name])})")
    rows.append("The warm start differs most between machines (CPU float kernels); the gain is the recipe's effect.")
    return "\n".join(rows)
