"""Kill-and-resume of ``oat-train``: a run SIGKILLed mid-way and resumed ends exactly where an
uninterrupted run of the same seed ends (CPU determinism).

The interrupted run saves every round (``--loop.save-every 1``); once a checkpoint of round >= 2 is
complete (``checkpoints/latest`` names it) the process is killed with SIGKILL -- no cleanup, possibly
in the middle of writing the next checkpoint -- and relaunched with ``--loop.resume``. Both runs must
then agree on the query count, the final evaluation metrics and the final greedy responses.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import subprocess_env

pytestmark = pytest.mark.slow

NUM_ENVS = 8
ROUNDS = 12
KILL_AFTER_ROUND = 2

# A few seconds of warm-up, 12 rounds of 8 duels, evaluation on 16 held-out prompts every 4 rounds.
ARGS = [
    "--env-kwargs",
    '{"template": "bare", "operators": "+", "min_digits": 1, "max_digits": 2}',
    "--num-envs",
    str(NUM_ENVS),
    "--seed",
    "3",
    "--no-plot",
    "--warmup.steps",
    "60",
    "--warmup.batch-size",
    "32",
    "--agent.max-new-tokens",
    "4",
    "--agent.max-seq-length",
    "16",
    "--learner.zero-stage",
    "0",
    "--learner.micro-batch-size",
    "8",
    "--learner.learning-rate",
    "2e-3",
    "--loop.total-queries",
    str(NUM_ENVS * ROUNDS),
    "--loop.eval-query-interval",
    str(NUM_ENVS * 4),
    "--loop.num-eval-prompts",
    "16",
    "--loop.no-progress",
    "--loop.no-tensorboard",
]


def _command(log_dir: Path, *extra: str) -> list[str]:
    # ``python -m oat_agents.cli.train`` is the ``oat-train`` entry point (``oat_agents.cli.train:main``).
    return [sys.executable, "-m", "oat_agents.cli.train", *ARGS, "--loop.log-dir", str(log_dir), *extra]


def _env() -> dict[str, str]:
    return subprocess_env(OMP_NUM_THREADS="1", PYTHONHASHSEED="0")


def _latest_round(ckpt_dir: Path) -> int:
    """Round of the newest *complete* checkpoint (``latest`` is only rewritten after the rename)."""
    latest = ckpt_dir / "latest"
    try:
        tag = latest.read_text().strip()
    except (FileNotFoundError, OSError):
        return -1
    return int(tag.rsplit("_", 1)[1]) if tag.startswith("round_") else -1


def _final_eval(log_dir: Path) -> dict:
    """The last evaluation dump: metrics plus every greedy response."""
    dumps = sorted((log_dir / "eval").glob("queries_*.json"))
    assert dumps, f"no evaluation dumps in {log_dir}"
    payload = json.loads(dumps[-1].read_text())
    payload["metrics"].pop("eval/generate_s")  # wall time, the one non-deterministic number
    return payload


def _run(log_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(log_dir, *extra), capture_output=True, text=True, timeout=120, env=_env())


# Regression guard: a warm-up that left its last gradients in ``.grad`` made the first learner step
# after a resume differ from the uninterrupted run (``sft_warmup`` now clears them).
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"

    start = time.perf_counter()
    reference = _run(reference_dir)
    reference_s = time.perf_counter() - start
    assert reference.returncode == 0, reference.stderr[-3000:]
    print(f"uninterrupted run: {reference_s:.1f}s")  # ~10 s on an idle core

    # Launch, wait for a complete checkpoint of round >= KILL_AFTER_ROUND, SIGKILL.
    proc = subprocess.Popen(
        _command(killed_dir, "--loop.save-every", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 90
    try:
        while _latest_round(killed_dir / "checkpoints") < KILL_AFTER_ROUND:
            if proc.poll() is not None:
                pytest.fail(
                    f"training exited (rc={proc.returncode}) before round {KILL_AFTER_ROUND}: "
                    f"{proc.stderr.read()[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint of round >= {KILL_AFTER_ROUND} within 90s")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _latest_round(killed_dir / "checkpoints")
    assert KILL_AFTER_ROUND <= killed_at < ROUNDS, f"killed too late to test anything (round {killed_at})"

    start = time.perf_counter()
    resumed = _run(killed_dir, "--loop.save-every", "1", "--loop.resume")
    resumed_s = time.perf_counter() - start
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    print(f"resumed run: {resumed_s:.1f}s")
    resumed_line = next(line for line in resumed.stdout.splitlines() if line.startswith("resumed from"))
    resumed_round = int(resumed_line.split("round ")[-1].split(",")[0])
    assert resumed_round >= killed_at

    # Same total queries (no round lost or repeated) and the same final evaluation, response for response.
    ref_eval, res_eval = _final_eval(reference_dir), _final_eval(killed_dir)
    assert ref_eval["queries"] == res_eval["queries"] == NUM_ENVS * ROUNDS
    assert res_eval["metrics"] == ref_eval["metrics"]
    assert [s["response"] for s in res_eval["samples"]] == [s["response"] for s in ref_eval["samples"]]

    # The per-round training losses after the resume point match the uninterrupted run's too.
    def losses(log_dir: Path) -> dict[int, float]:
        rows = [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]
        return {int(r["misc/rounds"]): r["train/loss"] for r in rows if "train/loss" in r}

    ref_losses, res_losses = losses(reference_dir), losses(killed_dir)
    assert sorted(ref_losses) == list(range(1, ROUNDS + 1))
    assert {r: res_losses[r] for r in range(resumed_round + 1, ROUNDS + 1)} == {
        r: ref_losses[r] for r in range(resumed_round + 1, ROUNDS + 1)
    }
