"""The pure parts of the real-model benchmarks' ``--backend`` option and of ``grpo-vs-trl --model smollm2``:
argument checks, the GSM8K chat prompts both sides get, and the protocol of the vLLM worker subprocess (spec,
result line, oracle bridge). Nothing here loads SmolLM2 or vLLM; every test runs in well under a second or two."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from oat_agents.bench import dap_vs_trl, grpo_vs_trl, vllm_side
from oat_agents.bench.rounds import round_timings
from oat_agents.bench.vllm_side import (
    RESULT_MARKER,
    BridgedOracle,
    OracleBridge,
    backend_sides,
    check_spec,
    encode_result,
    parse_result,
    run_worker,
    worker_env,
)
from oat_env.oracles.base import OracleResult

# SmolLM2-135M-Instruct's chat template (as its GGUF ships it): a default system prompt, ChatML turns.
SMOLLM_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def grpo_args(*argv: str):
    return grpo_vs_trl.check_args(grpo_vs_trl.build_parser().parse_args(list(argv)))


# -- arguments ---------------------------------------------------------------------------------------
def test_backend_sides():
    assert backend_sides("hf", "tiny") == ("hf",)
    assert backend_sides("vllm", "smollm2") == ("vllm",)
    assert backend_sides("both", "smollm2") == ("hf", "vllm")
    with pytest.raises(SystemExit, match="needs --model smollm2"):
        backend_sides("vllm", "tiny")
    with pytest.raises(SystemExit, match="must be one of"):
        backend_sides("tpu", "smollm2")


def test_grpo_smollm_defaults_and_quick():
    args = grpo_args("--model", "smollm2")
    assert (args.steps, args.prompts, args.group, args.max_new_tokens, args.lr) == (10, 2, 4, 64, 1e-6)
    quick = grpo_args("--model", "smollm2", "--quick", "--backend", "both")
    assert quick.steps == grpo_vs_trl.QUICK_STEPS["smollm2"] and quick.backend == "both"
    tiny = grpo_args()
    assert (tiny.steps, tiny.prompts, tiny.group, tiny.max_new_tokens) == (12, 16, 8, 8)
    assert grpo_args("--prompts", "3", "--group", "2").prompts == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (("--steps", "1"), "--steps must be >= 2"),
        (("--group", "1"), "--group must be >= 2"),
        (("--prompts", "0"), "--prompts must be >= 1"),
        (("--model", "smollm2", "--max-new-tokens", "16"), "64\\+ new tokens"),
        (("--backend", "vllm"), "needs --model smollm2"),
    ],
)
def test_grpo_bad_arguments(argv, message):
    with pytest.raises(SystemExit, match=message):
        grpo_args(*argv)


def test_grpo_short_completions_allowed_on_request():
    assert grpo_args("--model", "smollm2", "--max-new-tokens", "16", "--allow-short").max_new_tokens == 16


def test_dap_refuses_vllm_with_the_tiny_model_before_any_work(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["oat-bench dap-vs-trl", "--backend", "vllm"])
    monkeypatch.setattr(dap_vs_trl, "load_trl", lambda: pytest.fail("checked the backend too late"))
    with pytest.raises(SystemExit, match="needs --model smollm2"):
        dap_vs_trl.main()


def test_missing_vllm_venv_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("OAT_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(SystemExit, match="setup_vllm_venv"):
        vllm_side.vllm_python()


# -- GSM8K prompts -----------------------------------------------------------------------------------
def test_gsm8k_chat_prompts_are_the_same_on_both_sides(shared_data: Path):
    """TRL's dataset rows are the env's observations, in order, as one user message each; with the chat template
    both render to the same text as ours (HFPolicy's format_prompt)."""
    from oat_agents.loops.group_rl import make_grouped_vec
    from oat_agents.policies.base import format_prompt
    from oat_agents.tiny import CharTokenizer

    work = grpo_vs_trl.smollm_work()
    assert work.chat and work.env_id == "oat/GSM8K-v0"
    assert work.env_kwargs == {"prompt_data": str(shared_data / "gsm8k_test.jsonl"), "template": "boxed"}
    json.dumps(work.env_kwargs)  # the worker gets them as JSON
    prompts, group, steps = 2, 3, 3
    rows = grpo_vs_trl.trl_dataset(work, prompts * steps)
    with pytest.warns(UserWarning, match="no held-out prompts"):
        env = make_grouped_vec(work.env_id, num_prompts=prompts, group_size=group, **work.env_kwargs)
    obs, _ = env.reset(seed=0)
    served = []
    for _ in range(steps):
        assert all(obs[i] == obs[i - i % group] for i in range(len(obs)))  # contiguous groups
        served += list(obs[::group])
        obs, *_ = env.step(["\\boxed{0}"] * len(obs))
    env.close()
    assert [r["prompt"] for r in rows] == [[{"role": "user", "content": o}] for o in served]
    assert all(o.endswith("put your final answer within \\boxed{}.") for o in served)
    assert rows[0]["answer"] and rows[0]["prompt_text"] == served[0]
    tokenizer = CharTokenizer()
    tokenizer.chat_template = SMOLLM_CHAT_TEMPLATE
    ours = format_prompt(tokenizer, served[0], apply_chat_template=True)
    trl = tokenizer.apply_chat_template(rows[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert ours == trl and ours.endswith(served[0] + "<|im_end|>\n<|im_start|>assistant\n")


def test_gsm8k_env_kwargs_missing_file(tmp_path):
    from oat_agents.smollm import gsm8k_env_kwargs

    with pytest.raises(SystemExit, match="GSM8K samples not found"):
        gsm8k_env_kwargs(tmp_path / "missing.jsonl")


@pytest.mark.filterwarnings("ignore:gsm8k. prompt_data= without eval_prompt_data")
def test_trl_reward_grades_like_the_env(shared_data: Path):
    from oat_env.integrations.trl import reward_function

    work = grpo_vs_trl.smollm_work()
    rows = grpo_vs_trl.trl_dataset(work, 2)
    reward = reward_function(work.env_id, **work.env_kwargs)
    gold = rows[0]["answer"]
    got = reward(prompts=[r["prompt"] for r in rows], completions=[f"so \\boxed{{{gold}}}", "no idea"],
                 answer=list(rows["answer"]))
    reward.close()
    assert got[0] == 1.0 and got[1] < 1.0


# -- the worker protocol -----------------------------------------------------------------------------
def good_spec(**overrides):
    spec = {"job": "grpo", "workload": "smollm2-gsm8k", "model_dir": "/m", "threads": 1, "seed": 0,
            "params": {"steps": 3, "prompts": 2, "group": 4, "max_new_tokens": 64}}
    spec.update(overrides)
    return spec


def test_check_spec():
    assert check_spec(good_spec())["job"] == "grpo"
    dap = {"job": "dap", "workload": "smollm2-tldr", "model_dir": "/m",
           "params": {"pairs": 8, "batch": 4, "max_new_tokens": 64}}
    assert check_spec(dap)["workload"] == "smollm2-tldr"
    bad = [
        (good_spec(job="ppo"), "job must be one of"),
        (good_spec(workload="smollm2-tldr"), "workload of job 'grpo'"),
        (good_spec(model_dir=""), "model_dir"),
        (good_spec(params={"steps": 3, "prompts": 2, "group": 4}), "params.max_new_tokens"),
        (good_spec(params={"steps": True, "prompts": 2, "group": 4, "max_new_tokens": 8}), "params.steps"),
        (good_spec(params={"steps": 3, "prompts": 2, "group": 4, "max_new_tokens": 8, "share_prompt": "yes"}),
         "params.share_prompt"),
        (good_spec(threads=0), "threads"),
        (good_spec(oracle_bridge={"address": "/x"}), "oracle_bridge"),
        ({"job": "dap"}, "lacks"),
        ([1, 2], "JSON object"),
    ]
    for spec, message in bad:
        with pytest.raises(ValueError, match=message):
            check_spec(spec)


def test_result_line_round_trip_among_log_noise():
    line = encode_result({"seconds": 1.5, "rounds": [{"generate_s": 0.5}]})
    assert line.startswith(RESULT_MARKER) and "\n" not in line
    stdout = f"INFO vllm says hi\n{encode_result({'seconds': 9.0})}\nnoise\n{line}\nmore noise"
    assert parse_result(stdout) == {"seconds": 1.5, "rounds": [{"generate_s": 0.5}]}  # the last one wins
    with pytest.raises(RuntimeError, match="printed no OAT_BENCH_RESULT"):
        parse_result("INFO only logs\n")
    with pytest.raises(RuntimeError, match="malformed"):
        parse_result(RESULT_MARKER + '{"no_seconds": 1}')
    for bad in ({"seconds": -1.0}, {"seconds": "1"}, {}):
        with pytest.raises(ValueError, match="seconds"):
            encode_result(bad)


def test_worker_env():
    env = worker_env(2, base={"PATH": "/bin", "VIRTUAL_ENV": "/work/main/.venv", "VLLM_CPU_KVCACHE_SPACE": "4"})
    assert env["PATH"] == "/bin" and "VIRTUAL_ENV" not in env
    assert env["OMP_NUM_THREADS"] == "2" and env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind" and env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1" and "TORCH_EXTENSIONS_DIR" not in env
    env = worker_env(1, base={}, python="/v/.venv-vllm/bin/python")
    assert env["TORCH_EXTENSIONS_DIR"] == "/v/.venv-vllm/torch_extensions"  # not the main venv's JIT cache
    assert worker_env(1, base={"TORCH_EXTENSIONS_DIR": "/mine"}, python="/v/bin/python")["TORCH_EXTENSIONS_DIR"] == "/mine"


def fake_python(tmp_path: Path, body: str) -> Path:
    """An executable standing in for the vLLM venv's python: ``body`` is its shell script."""
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_run_worker_parses_the_result_and_passes_the_spec(tmp_path):
    # The fake worker checks it got `-m oat_agents.bench.vllm_side SPEC` and the worker env, then answers.
    script = (
        'test "$1" = "-m" && test "$2" = "oat_agents.bench.vllm_side" || exit 9\n'
        'test "$VLLM_ENABLE_V1_MULTIPROCESSING" = "0" || exit 8\n'
        'cp "$3" ' + str(tmp_path / "seen.json") + "\n"
        'echo "INFO engine up"; echo "vLLM warns" >&2\n'
        f'echo \'{encode_result({"seconds": 2.5, "rounds": []})}\'\n'
    )
    result = run_worker(good_spec(), python=fake_python(tmp_path, script), echo=False)
    assert result == {"seconds": 2.5, "rounds": []}
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["job"] == "grpo" and seen["params"]["steps"] == 3 and "oracle_bridge" not in seen


def test_run_worker_failure_shows_the_log_tail(tmp_path):
    python = fake_python(tmp_path, 'echo "Traceback: boom in vllm" >&2\nexit 3\n')
    with pytest.raises(RuntimeError, match="(?s)exited with 3.*boom in vllm"):
        run_worker(good_spec(), python=python, echo=False)
    with pytest.raises(ValueError, match="job must be one of"):
        run_worker(good_spec(job="nope"), python=python, echo=False)


class FakeOracle:
    """A reward + preference oracle: the score of a response is its length."""

    def __init__(self):
        self.calls = []

    def reward(self, prompts, responses, references=None):
        self.calls.append(("reward", list(prompts), list(responses), references))
        return OracleResult(scores=np.array([float(len(r)) for r in responses]),
                            info={"tag": np.array(["x"] * len(responses))}, metrics={"oracle/n": len(responses)})

    def compare(self, prompts, responses_a, responses_b, references=None):
        self.calls.append(("compare", list(prompts), list(responses_a), references))
        if not prompts:
            raise ValueError("empty batch")
        a = np.array([float(len(r)) for r in responses_a])
        b = np.array([float(len(r)) for r in responses_b])
        return OracleResult(prob_a_wins=(a > b).astype(float), info={"score_a": a, "score_b": b})


def test_oracle_bridge_round_trip():
    oracle = FakeOracle()
    with OracleBridge(oracle) as bridge:
        spec = bridge.spec
        assert set(spec) == {"address", "authkey"}
        client = BridgedOracle(spec["address"], spec["authkey"])
        res = client.compare(["p1", "p2"], ["long answer", "a"], ["short", "bb"], references=["r1", "r2"])
        np.testing.assert_array_equal(res.prob_a_wins, [1.0, 0.0])
        np.testing.assert_array_equal(res.info["score_b"], [5.0, 2.0])
        scored = client.reward(("p",), np.array(["abc"]))
        assert scored.scores.tolist() == [3.0] and scored.info["tag"].tolist() == ["x"]
        assert scored.metrics == {"oracle/n": 1.0}
        assert oracle.calls[0] == ("compare", ["p1", "p2"], ["long answer", "a"], ["r1", "r2"])
        with pytest.raises(RuntimeError, match="ValueError: empty batch"):
            client.compare([], [], [])
        assert bridge.calls == 2
        client.close()
        # A second client (the bridge serves one at a time, one after the other).
        again = BridgedOracle(spec["address"], spec["authkey"])
        assert again.reward(["p"], ["xy"]).scores.tolist() == [2.0]
        again.close()


def test_oracle_bridge_refuses_a_wrong_key_and_unknown_methods():
    from multiprocessing import AuthenticationError

    with OracleBridge(FakeOracle()) as bridge:
        with pytest.raises(AuthenticationError):
            BridgedOracle(bridge.spec["address"], "00" * 16)
        client = BridgedOracle(bridge.spec["address"], bridge.spec["authkey"])
        with pytest.raises(RuntimeError, match="unknown oracle method"):
            client._call("evaluate", [])
        client.close()


def test_bridged_oracle_is_the_env_oracle_of_the_tldr_duel(shared_data: Path):
    """The worker's TL;DR env takes the bridged oracle as its oracle object, wraps it in the post-reference rule
    exactly as it wraps the in-process embedding oracle, and labels pairs from its answers."""
    import gymnasium as gym

    from oat_agents.smollm import tldr_splits

    train, held_out = tldr_splits(shared_data / "tldr_instructgpt_samples.jsonl", 8, 2)
    oracle = FakeOracle()
    with OracleBridge(oracle) as bridge:
        client = BridgedOracle(**bridge.spec)
        env = gym.make_vec("oat/TLDR-Duel-v0", num_envs=2, prompt_data=train, eval_prompt_data=held_out,
                           oracle=client, label_mode="threshold")
        obs, _ = env.reset(seed=0)
        _, rewards, *_ = env.step((["a much longer summary", "x"], ["short", "a longer one"]))
        env.close()
        client.close()
    assert rewards.tolist() == [1.0, 0.0]
    kind, prompts, _, references = oracle.calls[-1]
    assert kind == "compare" and prompts == list(obs)
    assert all(ref and ref in p for ref, p in zip(references, prompts))  # the post, parsed out of the prompt


def test_round_timings(tmp_path):
    file = tmp_path / "metrics.jsonl"
    rows = [{"misc/rounds": 1, "actor/generate_s": 2.0, "train/step_s": 3.0, "misc/round_s": 5.5, "x": 1},
            {"eval/win_rate": 0.5}, {"misc/rounds": 2, "actor/generate_s": 1.0, "misc/weight_sync_s": 0.25}]
    file.write_text("\n".join(json.dumps(r) for r in rows))
    assert round_timings(str(file)) == [
        {"generate_s": 2.0, "learn_s": 3.0, "round_s": 5.5}, {"generate_s": 1.0, "sync_s": 0.25}]
    assert round_timings(str(tmp_path / "none.jsonl")) == []


@pytest.mark.parametrize("asynchronous", [False, True])
def test_grpo_time_ours_runs_the_library_loop(monkeypatch, asynchronous):
    """``time_ours`` is ``run_online_rl`` timed by its ``misc/round_s`` (first round excluded, and the last when
    asynchronous); with
    ``--asynchronous`` every round after the first is generated in the loops' actor thread during the previous
    ``learn()``; ``--share-prompt`` reaches the learner (its default: on with smollm2, off with the tiny model)."""
    assert grpo_vs_trl.check_args(grpo_vs_trl.build_parser().parse_args([])).share_prompt is False
    assert grpo_vs_trl.check_args(grpo_vs_trl.build_parser().parse_args(["--model", "smollm2"])).share_prompt
    import threading

    from oat_agents.agents.group_rl import GroupRLAgent
    from oat_agents.tiny import CharTokenizer, build_tiny_llama

    acted_in: list[str] = []
    share: list[bool] = []
    act = GroupRLAgent.act

    def recording_act(self, obs):
        acted_in.append(threading.current_thread().name)
        share.append(self.learner.config.share_prompt)
        return act(self, obs)

    monkeypatch.setattr(GroupRLAgent, "act", recording_act)
    tokenizer = CharTokenizer()
    model = build_tiny_llama(len(tokenizer), hidden=32, layers=1, heads=2, seed=0)
    argv = ["--steps", "3", "--prompts", "2", "--group", "2", "--max-new-tokens", "3", "--share-prompt"]
    args = grpo_vs_trl.check_args(grpo_vs_trl.build_parser().parse_args(argv + ["--asynchronous"] * asynchronous))
    rounds: list[dict[str, float]] = []
    seconds = grpo_vs_trl.time_ours(model, tokenizer, args, rounds_out=rounds)
    assert len(rounds) == 3 and all(r["generate_s"] > 0 and r["learn_s"] > 0 for r in rounds)
    # asynchronous: the last round generates nothing beside its learn(), so it is not timed either
    timed = rounds[1:-1] if asynchronous else rounds[1:]
    assert seconds == pytest.approx(sum(r["round_s"] for r in timed) / (len(timed) * 4))
    assert len(acted_in) == 3 and share == [True] * 3
    if asynchronous:
        assert acted_in[0] == "MainThread" and all(name.startswith("oat-actor") for name in acted_in[1:])
    else:
        assert acted_in == ["MainThread"] * 3
