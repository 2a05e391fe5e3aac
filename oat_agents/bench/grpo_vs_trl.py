"""Wall time per 1,000 completions: our Dr.GRPO (GroupRLAgent) vs TRL's ``GRPOTrainer(loss_type="dr_grpo")``.

Both sides train the same tiny character-level Llama (same initial weights) on single-digit addition
prompts of ``oat/Arithmetic-v0`` (the first ``steps * prompts`` of its training stream seeded 0) with
the env's own reward, group size, prompts per step, completion length, learning rate and sampling
temperature, on CPU, with no reference model (β = 0) and one optimizer step per generation batch.
TRL gets the prompts from :func:`oat_env.integrations.trl.prompt_dataset` and the reward from
:func:`oat_env.integrations.trl.reward_function` -- the env's verifier, one batched call per
generation batch, so a completion earns on both sides exactly what ``env.step`` gives it:

* **TRL**: ``GRPOTrainer`` with ``loss_type="dr_grpo"``, ``scale_rewards="none"`` (Dr.GRPO),
  ``num_generations = G``, ``per_device_train_batch_size = B·G``, ``steps_per_generation = 1``,
  ``beta = 0``, ``gradient_checkpointing=False`` (as ours; TRL's own default is on, see
  ``--trl-gradient-checkpointing``), transformers ``generate`` on CPU (no vLLM). Timed from the end of its first optimizer
  step to the end of the last (a ``TrainerCallback``), so setup and the first step are excluded.
* **ours**: one round = ``agent.act`` (HFPolicy generate, ``n = G``) → grouped env ``step`` (one batched
  verifier call) → ``observe`` → ``learn`` (one Dr.GRPO step on the DeepSpeed learner) →
  ``sync_weights``; the first round is excluded the same way.

Prints seconds per 1,000 completions for each and ``ratio = TRL / ours`` (target >= 1.5).

Measured on a shared 2-core CPU (OMP_NUM_THREADS=1; noisy, ±20% between runs): with matched settings
the two are at parity -- 1.0-1.4x at the defaults (8 tokens, hidden 64) and ~1.0x at 32 tokens / hidden
128 -- because both sides spend their time in the same transformers ``generate`` and the same
forward/backward of the same model; with TRL's default gradient checkpointing on, ~1.5x at 32 tokens.
The 1.5x aim is NOT met with matched settings on CPU.
TRL is an optional dependency (``pip install trl``); it is imported lazily with a clear error.

    OMP_NUM_THREADS=1 oat-bench grpo-vs-trl [--steps 12] [--prompts 16] [--group 8]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import torch

import oat_env  # noqa: F401
from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
from oat_agents.algorithms.pg import PGConfig
from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.loops.group_rl import make_grouped_vec
from oat_agents.policies.hf import HFPolicy
from oat_agents.tiny import CharTokenizer, build_tiny_llama
from oat_env.integrations.trl import prompt_dataset, reward_function

TARGET = 1.5
ENV_KWARGS = {"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare"}


def time_ours(model: torch.nn.Module, tokenizer, args: argparse.Namespace) -> float:
    """Seconds per completion of our Dr.GRPO rounds (first round excluded)."""
    init_distributed()
    env = make_grouped_vec("oat/Arithmetic-v0", num_prompts=args.prompts, group_size=args.group, **ENV_KWARGS)
    policy = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu")
    learner = LearnerEngine(copy.deepcopy(model), LearnerConfig(
        zero_stage=0, learning_rate=args.lr, micro_batch_size=args.prompts * args.group, max_grad_norm=1.0, seed=0,
    ))
    agent = GroupRLAgent(policy, learner, GroupRLAgentConfig(
        num_samples=args.group, temperature=1.0, max_new_tokens=args.max_new_tokens, max_seq_length=64,
        log_entropy=False, pg=PGConfig(advantage_estimator="dr_grpo", loss_agg="constant"),
    ))
    obs, _ = env.reset(seed=0)
    marks = []
    for _ in range(args.steps):
        responses = agent.act(obs)
        obs, rewards, *_ = env.step(responses)
        agent.observe(rewards)
        agent.learn()
        agent.sync_weights()
        marks.append(time.perf_counter())
    return (marks[-1] - marks[0]) / ((len(marks) - 1) * args.prompts * args.group)


def time_trl(model: torch.nn.Module, tokenizer, args: argparse.Namespace) -> float:
    """Seconds per completion of TRL GRPOTrainer steps (first step excluded)."""
    try:
        from transformers import TrainerCallback
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as err:  # optional dependency
        raise SystemExit(f"TRL is needed for this benchmark: pip install trl ({err})") from err

    # The env's prompts (columns prompt/answer/prompt_uid) and the env's reward, graded by its verifier.
    dataset = prompt_dataset("oat/Arithmetic-v0", n=args.steps * args.prompts, seed=0, **ENV_KWARGS)
    reward = reward_function("oat/Arithmetic-v0", **ENV_KWARGS)
    marks: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_end(self, *_, **__):
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out_dir:
        config = GRPOConfig(
            output_dir=out_dir,
            loss_type="dr_grpo",
            scale_rewards="none",
            beta=0.0,
            num_generations=args.group,
            per_device_train_batch_size=args.prompts * args.group,
            steps_per_generation=1,
            gradient_accumulation_steps=1,
            num_iterations=1,
            max_completion_length=args.max_new_tokens,
            temperature=1.0,
            learning_rate=args.lr,
            lr_scheduler_type="constant",
            max_grad_norm=1.0,
            # Off by default, as ours (TRL 1.x turns it on by default: --trl-gradient-checkpointing).
            gradient_checkpointing=args.trl_gradient_checkpointing,
            max_steps=args.steps,
            logging_steps=10**6,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            bf16=False,
            shuffle_dataset=False,
            seed=0,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(
            model=copy.deepcopy(model),
            reward_funcs=reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[StepTimer()],
        )
        trainer.train()
    reward.close()
    if reward.verifier_calls != args.steps:  # one batched verifier call per generation batch
        raise RuntimeError(f"TRL made {reward.verifier_calls} reward calls in {args.steps} steps")
    if len(marks) < 2:
        raise RuntimeError(f"TRL ran {len(marks)} steps; need >= 2 to time")
    return (marks[-1] - marks[0]) / ((len(marks) - 1) * args.prompts * args.group)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per side (the first is not timed)")
    parser.add_argument("--prompts", type=int, default=16, help="distinct prompts per step (B)")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--trl-gradient-checkpointing", action="store_true",
                        help="TRL's own default (recompute activations); off = the same work as ours")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be >= 2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    tokenizer = CharTokenizer()
    model = build_tiny_llama(len(tokenizer), hidden=args.hidden, layers=2, heads=2, seed=0)
    ours = time_ours(model, tokenizer, args)
    trl = time_trl(model, tokenizer, args)
    print(f"completions/step: {args.prompts} prompts x {args.group} = {args.prompts * args.group}, "
          f"max_new_tokens={args.max_new_tokens}, timed steps: {args.steps - 1}")
    print(f"ours (GroupRLAgent Dr.GRPO):        {1000 * ours:8.3f} s / 1k completions")
    print(f"TRL GRPOTrainer (dr_grpo):       {1000 * trl:8.3f} s / 1k completions")
    ratio = trl / ours
    print(f"ratio TRL / ours = {ratio:.2f}x (target >= {TARGET}x): {'OK' if ratio >= TARGET else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
