#!/usr/bin/env bash
# Dr.GRPO on MATH with Qwen2.5-Math-1.5B: the GPU recipe (one GPU, vLLM collocated with the learner),
# as one `oat-train --algo dr_grpo` command line.
#
# What it runs
#   * env:     oat/MATH-v0, train split (hub default, or PROMPT_DATA=a local .jsonl with problem/answer),
#              "boxed" template ("... Put your final answer within \boxed{}."), math-verify grading;
#              evaluation on the held-out MATH-500 split (greedy, eval/accuracy).
#   * actor:   VLLMPolicy (bf16) with sleep mode: it sleeps (weights to CPU, KV cache freed) while the
#              DeepSpeed learner trains on the same GPU, and wakes up to reload weights and generate.
#   * learner: LearnerEngine, ZeRO-2, bf16, AdamW lr 1e-6, gradient checkpointing, no reference model
#              (no KL term, as in Dr.GRPO), truncated importance sampling (cap 2) for the vLLM/learner gap.
#   * Dr.GRPO: A = r - mean_group(r) (no std division), loss summed over tokens / (N * max_new_tokens);
#              16 prompts x 8 samples = 128 rollouts per round, one optimizer step per round, computed in
#              64 chunks of 2 rows (a 2 x 4096 x 152k fp32 logits tensor is already ~5 GB).
#
# Expected learning curve (an expectation from the Dr.GRPO paper, arXiv 2503.20783, and oat's Oat-Zero
# runs on this setting -- NOT measured in this repository, which has no GPU in CI): greedy MATH-500
# accuracy starts low with the boxed template (the base model often does not box its answer; expect
# roughly 0.3-0.4), climbs quickly in the first ~100 rounds as the format is learned, then slowly towards
# ~0.7 after several hundred rounds; response length first drops and then stays roughly flat
# (Dr.GRPO removes GRPO's length bias). Numbers vary with the template, max length and data order.
#
# Needs: a CUDA GPU with >= 40 GB (H100/A100-80G comfortable), `pip install -e .[train] vllm`.
# Usage:  bash examples/math_drgrpo.sh [extra oat-train options]   (env overrides below, e.g. QUERIES=32768 bash ...)
#
# What was exercised without a GPU: every option is a real `oat-train` option (tests/test_train_cli.py) and
# `oat-train --algo dr_grpo` runs the same code path on CPU with the tiny model (tests/test_train_algos.py).
# NOT exercised here: vLLM sleep mode, bf16 on GPU, the 1.5B model, the memory and wall-clock numbers.
set -euo pipefail

MODEL=${MODEL:-Qwen/Qwen2.5-Math-1.5B}
PROMPT_DATA=${PROMPT_DATA:-}              # empty = the hub default of oat/MATH-v0
QUERIES=${QUERIES:-65536}                 # verifier queries (= rollouts): 512 rounds of 128
EVAL_EVERY=${EVAL_EVERY:-8192}
LOG_DIR=${LOG_DIR:-runs/math_drgrpo}
SEED=${SEED:-0}

ENV_KWARGS='{"template": "boxed"}'
if [[ -n "$PROMPT_DATA" ]]; then
  ENV_KWARGS="{\"template\": \"boxed\", \"prompt_data\": \"$PROMPT_DATA\"}"
fi

# The learner is built first (ZeRO-2, bf16), then vLLM in the memory left, asleep between rollouts
# (--rl.collocate: sleep mode, woken for every generation and weight sync).
exec oat-train \
  --algo dr_grpo \
  --model "$MODEL" \
  --backend vllm \
  --env-id oat/MATH-v0 \
  --env-kwargs "$ENV_KWARGS" \
  --num-envs 16 \
  --seed "$SEED" \
  --rl.num-samples 8 \
  --rl.temperature 1.0 \
  --rl.top-p 1.0 \
  --rl.max-new-tokens 3000 \
  --rl.max-seq-length 4096 \
  --rl.learn-epochs 1 \
  --rl.num-mini-batches 1 \
  --rl.collocate \
  --rl.no-log-entropy \
  --rl.pg.loss-agg constant \
  --rl.pg.tis-cap 2.0 \
  --rl.pg.clip-eps-low 0.2 \
  --rl.pg.clip-eps-high 0.2 \
  --learner.zero-stage 2 \
  --learner.dtype bf16 \
  --learner.learning-rate 1e-6 \
  --learner.micro-batch-size 2 \
  --learner.gradient-accumulation-steps 64 \
  --learner.gradient-checkpointing \
  --learner.max-grad-norm 1.0 \
  --learner.weight-decay 0.0 \
  --vllm.dtype bfloat16 \
  --vllm.gpu-memory-utilization 0.35 \
  --vllm.max-model-len 4096 \
  --loop.total-queries "$QUERIES" \
  --loop.eval-query-interval "$EVAL_EVERY" \
  --loop.num-eval-prompts 500 \
  --loop.save-every 64 \
  --loop.log-dir "$LOG_DIR" \
  "$@"
