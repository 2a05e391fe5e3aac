"""The loops under torchrun with 2 ranks (DESIGN.md §6). ``oat-train`` (online DPO): each rank duels its own
prompts, the learners are data-parallel, the query budget and regret count both ranks, rank 0 alone logs,
and a 2-rank checkpoint resumes with 2 ranks (and refuses 1). ``run_online_rl`` (Dr.GRPO): run as a script
by torchrun, this file is the worker; both ranks step their optimizers in lockstep and end with identical
weights after sampling different prompts, and the budget counts both."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import subprocess_env

ARGS = [
    "--env-kwargs", '{"template": "bare", "operators": "+", "max_digits": 1}', "--num-envs", "4",
    "--warmup.steps", "5", "--tiny-hidden", "32", "--tiny-layers", "1", "--tiny-heads", "2",
    "--agent.max-new-tokens", "3", "--agent.max-seq-length", "12",
    "--learner.zero-stage", "2", "--learner.micro-batch-size", "4",
    "--loop.eval-query-interval", "16", "--loop.num-eval-prompts", "8", "--loop.no-progress", "--no-plot",
    "--loop.no-tensorboard",
]  # fmt: skip


def _torchrun(log_dir: Path, *extra: str, nproc: int = 2) -> subprocess.CompletedProcess:
    from oat_agents.learners.dist import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(free_port()), "-m", "oat_agents.cli.train", *ARGS,
           "--loop.log-dir", str(log_dir), *extra]  # fmt: skip
    env = subprocess_env(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=480, env=env)


def _extra_state(log_dir: Path) -> dict:
    ckpt = log_dir / "checkpoints"
    tag = (ckpt / "latest").read_text().strip()
    state = torch.load(ckpt / tag / "mp_rank_00_model_states.pt", weights_only=False)
    return state["oat_extra_state"]


@pytest.mark.slow
def test_two_ranks_share_the_budget_and_resume(tmp_path: Path) -> None:
    log_dir = tmp_path / "run"
    first = _torchrun(log_dir, "--loop.total-queries", "32")
    assert first.returncode == 0, first.stderr[-4000:]
    assert first.stdout.count("oracle queries") == 1  # rank 0 alone prints the summary
    rows = [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["misc/queries"] for r in train_rows] == [8, 16, 24, 32]  # 2 ranks x 4 duels per round
    assert [r["queries"] for r in rows if "eval/accuracy" in r] == [0, 16, 32]
    assert train_rows[-1]["regret/cumulative"] > train_rows[0]["regret/cumulative"] > 0

    extra = _extra_state(log_dir)
    assert extra["world_size"] == 2 and len(extra["ranks"]) == 2
    ranks = extra["ranks"]
    assert [r["env"]["task"]["queries"] for r in ranks] == [16, 16]
    assert ranks[0]["env"]["records"] != ranks[1]["env"]["records"]  # each rank serves its own prompts
    both = ranks[0]["loop"]["regret"]["cumulative_regret"] + ranks[1]["loop"]["regret"]["cumulative_regret"]
    assert extra["loop"]["regret_history"][1][-1] == pytest.approx(both)  # the logged regret counts both ranks

    resumed = _torchrun(log_dir, "--loop.total-queries", "48", "--loop.resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from round_0000004: round 4, 32 queries" in resumed.stdout
    rows = [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["misc/queries"] for r in rows if "train/loss" in r] == [8, 16, 24, 32, 40, 48]

    single = subprocess.run(
        [sys.executable, "-m", "oat_agents.cli.train", *ARGS, "--loop.log-dir", str(log_dir), "--loop.total-queries", "64",
         "--loop.resume"],
        capture_output=True, text=True, timeout=240, env=subprocess_env(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"),
    )
    assert single.returncode != 0 and "written by 2 ranks; resume it with 2 processes, not 1" in single.stderr


@pytest.mark.slow
def test_two_rank_group_rl_shares_the_budget(tmp_path: Path) -> None:
    from oat_agents.learners.dist import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(Path(__file__).resolve()), str(tmp_path)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=480,
                         env=subprocess_env(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    assert out.returncode == 0, out.stderr[-4000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in results:
        assert r["queries"] == 48 and r["rounds"] == 3 and r["local_queries"] == 24  # 2 ranks x 8 answers x 3 rounds
    assert results[0]["prompts"] != results[1]["prompts"]  # different prompt streams
    assert results[0]["weights"] == pytest.approx(results[1]["weights"])  # data-parallel: identical learners
    assert results[0]["steps"] == results[1]["steps"] == 3  # one optimizer step per round, in lockstep
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["misc/queries"] for r in rows if "train/loss" in r] == [16, 32, 48]


def _rl_worker(out_dir: str) -> None:
    import copy

    import oat_env  # noqa: F401
    from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
    from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
    from oat_agents.learners.dist import rank
    from oat_agents.loops.bookkeeping import LoopConfig
    from oat_agents.loops.group_rl import make_grouped_vec, run_online_rl
    from oat_agents.policies.hf import HFPolicy
    from oat_agents.tiny import CharTokenizer, build_tiny_llama

    init_distributed()
    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=1, heads=2, seed=0)
    learner = LearnerEngine(model, LearnerConfig(zero_stage=2, learning_rate=1e-2, micro_batch_size=4, seed=0))
    agent = GroupRLAgent(HFPolicy(copy.deepcopy(model), tok, device="cpu"), learner,
                         GroupRLAgentConfig(num_samples=4, max_new_tokens=3, seed=0))
    env = make_grouped_vec("oat/Arithmetic-v0", num_prompts=2, group_size=4,
                           **{"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare"})
    served, act = [], agent.act
    agent.act = lambda obs: (served.append(list(obs)), act(obs))[1]  # the prompts the loop served this rank
    config = LoopConfig(total_queries=48, eval_query_interval=0, log_dir=f"{out_dir}/run", progress=False,
                        tensorboard=False)
    result = run_online_rl(env, agent, config)
    weights = [float(p.detach().sum()) for p in learner.module.parameters()]
    Path(out_dir, f"rank{rank()}.json").write_text(json.dumps({
        "queries": result.queries, "rounds": result.rounds, "local_queries": env.unwrapped.num_queries,
        "prompts": served, "weights": weights, "steps": learner.global_step,
    }))


if __name__ == "__main__":
    _rl_worker(sys.argv[1])
