#!/usr/bin/env bash
# Online vs offline DPO of Pythia-1B on TL;DR with a reward-model oracle (the GPU recipe).
#
#   policy    cleanrl/EleutherAI_pythia-1b-deduped__sft__tldr     (SFT on TL;DR; also the DPO reference)
#   oracle    cleanrl/EleutherAI_pythia-1b-deduped__reward__tldr  (sequence-classification RM; P(a>b) is
#             Bradley-Terry on the RM scores; labels drawn as Bernoulli(P) -- "bt_sample")
#   prompts   trl-lib/tldr (train; held-out win rate on its test split vs the human summaries, judged by
#             the same RM, every 2,048 queries)
#   actor     vLLM (--backend vllm), weights pushed from the learner after every round when online
#   learner   DeepSpeed ZeRO-2, bf16, DPO beta 0.1, lr 5e-7, 64 duels (prompts) per round
#
# The two runs differ only in the sync schedule:
#   online  --loop.sync-params-every 1   (the actor samples with the newest weights every round)
#   offline --loop.sync-params-every 0   (the actor never changes: all data come from the SFT policy,
#                                         i.e. DPO on a fixed dataset collected by pi_ref)
#
# A third mode runs SEA (arXiv 2411.01493) on the same setup:
#   sea     --algo sea --explorer.method bai_ts: 20 candidates per prompt, an ensemble ERM (10 members) on
#           the frozen SFT policy's mean-pooled last hidden state picks one Thompson-sampled arm and the
#           most uncertain duel against it; online sync. Add --rollout-fraction 0.5 for model rollouts.
#
# Usage:  bash examples/tldr_online_dpo.sh [online|offline|sea|both] [extra oat-train options...]
#   e.g.  bash examples/tldr_online_dpo.sh online --loop.total-queries 8192
#
# Requirements: one CUDA GPU (~24 GB is plenty for 1B + RM + vLLM at gpu_memory_utilization defaults),
# `pip install -e .[train,vllm]` (vllm for --backend vllm), Hugging Face hub access for the models and
# trl-lib/tldr (or pass local copies: --model /path and --env-kwargs '{"prompt_data": "/path.jsonl",
# "eval_prompt_data": "/path_test.jsonl", "reward_model": "/path_rm"}').
#
# What was exercised while writing this script (no GPU, no hub access on the build machine): every
# option below is a real `oat-train` option (checked by tests/test_train_cli.py) and the same code path
# ran on CPU with a tiny model (`--backend hf`, ZeRO-0/2, fp32) and with SmolLM2-135M on local TL;DR data
# with the embedding oracle (examples/smollm_offline.py). NOT exercised: vLLM, bf16 on GPU, the Pythia
# models and the RM download, the SEA mode at this scale (its CPU path is tests/test_train_cli.py's
# --algo sea run and the regret benchmark), and the wall-clock/memory numbers of this configuration.
#
# Multi-GPU (DESIGN.md section 6: one process per GPU, data-parallel learners):
#     torchrun --nproc_per_node 8 -m oat_agents.cli.train <the same options>
# runs 8 ranks, each with its own env, actor and oracle, dueling --num-envs prompts per round from its
# own prompt stream; the budget and regret count all ranks and rank 0 logs. Tested with 2 CPU ranks
# (tests/test_loop_dist.py), NOT on GPUs. Note the oracle (reward model) is loaded once per rank; serve it
# once with oat-serve-oracle and pass "oracle_url" in --env-kwargs to share it.
set -euo pipefail

MODE="${1:-both}"
if [[ $# -gt 0 ]]; then shift; fi
case "$MODE" in
  online|offline|sea|both) ;;
  *) echo "usage: $0 [online|offline|sea|both] [extra oat-train options]" >&2; exit 2 ;;
esac

SFT_MODEL="${SFT_MODEL:-cleanrl/EleutherAI_pythia-1b-deduped__sft__tldr}"
REWARD_MODEL="${REWARD_MODEL:-cleanrl/EleutherAI_pythia-1b-deduped__reward__tldr}"
QUERIES="${QUERIES:-50000}"
RUN_ROOT="${RUN_ROOT:-runs/tldr_pythia1b}"
SEED="${SEED:-0}"

ENV_KWARGS=$(cat <<EOF
{"oracle": "reward_model", "reward_model": "${REWARD_MODEL}", "dtype": "bfloat16", "batch_size": 32,
 "label_mode": "bt_sample"}
EOF
)

train() {  # $1 = online|offline, $2 = sync-params-every, rest = extra options
  local name="$1" sync="$2"
  shift 2
  oat-train \
    --model "$SFT_MODEL" \
    --backend vllm \
    --env-id oat/TLDR-Duel-v0 \
    --env-kwargs "$ENV_KWARGS" \
    --num-envs 64 \
    --seed "$SEED" \
    --agent.num-samples 2 \
    --agent.temperature 0.7 \
    --agent.top-p 1.0 \
    --agent.max-new-tokens 53 \
    --agent.stop "<|endoftext|>" \
    --agent.max-seq-length 640 \
    --agent.dap.loss-type dpo \
    --agent.dap.beta 0.1 \
    --learner.zero-stage 2 \
    --learner.dtype bf16 \
    --learner.micro-batch-size 8 \
    --learner.gradient-accumulation-steps 1 \
    --learner.learning-rate 5e-7 \
    --learner.lr-schedule constant \
    --learner.max-grad-norm 1.0 \
    --learner.gradient-checkpointing \
    --loop.total-queries "$QUERIES" \
    --loop.sync-params-every "$sync" \
    --loop.eval-query-interval 2048 \
    --loop.num-eval-prompts 512 \
    --loop.save-every 100 \
    --loop.log-dir "$RUN_ROOT/$name" \
    "$@"
}

if [[ "$MODE" == online || "$MODE" == both ]]; then
  train online 1 "$@"
fi
if [[ "$MODE" == offline || "$MODE" == both ]]; then
  train offline 0 "$@"
fi
if [[ "$MODE" == sea ]]; then
  train sea 1 --algo sea --explorer.method bai_ts --explorer.num-members 10 --agent.num-samples 20 "$@"
fi
echo "learning curves: $RUN_ROOT/*/curves.png   (tensorboard --logdir $RUN_ROOT)"
