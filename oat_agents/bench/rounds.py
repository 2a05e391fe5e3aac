"""Per-round timings of a benchmark run, read back from the loop's own ``metrics.jsonl`` (one definition of a
round's time: the loops' ``misc/round_s``, act or the wait for the actor + env step + learn + weight sync)."""

from __future__ import annotations

import json
import os

ROUND_KEYS = {"actor/generate_s": "generate_s", "oracle/s": "oracle_s", "train/step_s": "learn_s",
              "misc/weight_sync_s": "sync_s", "misc/round_s": "round_s", "actor/reward_mean": "reward_mean"}


def round_timings(metrics_file: str) -> list[dict[str, float]]:
    """Per-round seconds from the loop's ``metrics.jsonl`` (the rows with ``misc/rounds``), renamed by ROUND_KEYS."""
    out = []
    if not os.path.isfile(metrics_file):
        return out
    with open(metrics_file) as f:
        for line in f:
            row = json.loads(line)
            if "misc/rounds" in row:
                out.append({name: float(row[key]) for key, name in ROUND_KEYS.items() if key in row})
    return out


def steady_rounds(rounds: list[dict[str, float]], asynchronous: bool) -> list[dict[str, float]]:
    """The rounds a benchmark times: all but the first (warm-up); asynchronous, also not the last, which has no next
    round to generate beside its learning and would flatter the steady state max(generate, learn)."""
    return rounds[1:-1] if asynchronous and len(rounds) > 2 else rounds[1:]
