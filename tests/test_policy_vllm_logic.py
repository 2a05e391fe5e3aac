"""VLLMPolicy logic that needs no vLLM: argument checks, seed derivation, request building, conversion of
vLLM-shaped outputs into Generations, weight-reload plumbing and sleep mode, against a fake engine.
The real engine is exercised by tests_vllm/ (``make test-vllm``)."""

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from oat_agents.policies.base import Generations, Policy, SamplingParams
from oat_agents.policies.vllm import (
    EMBED_NAME,
    HEAD_NAME,
    VLLMPolicy,
    check_generate_args,
    complete_tied_weights,
    derive_seeds,
    encode_prompt,
    llm_engine_kwargs,
    outputs_to_generations,
    read_state_dict,
    sampled_logprobs,
    vllm_sampling_kwargs,
    write_safetensors,
)
from oat_agents.tiny import CharTokenizer

EOS = 2


def completion(token_ids, text="", finish_reason="stop", logprobs=None):
    if logprobs is None:
        logprobs = [{t: SimpleNamespace(logprob=-0.5 * (k + 1))} for k, t in enumerate(token_ids)]
    return SimpleNamespace(
        text=text,
        token_ids=tuple(token_ids),
        logprobs=logprobs,
        finish_reason=finish_reason,
        cumulative_logprob=None,
    )


def request_output(*completions):
    return SimpleNamespace(outputs=list(completions))


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeLLM:
    """Records calls; answers each request with tokens that depend on its prompt and seed."""

    def __init__(self, tokenizer, tied=True, in_process=True):
        self.tokenizer = tokenizer
        self.calls: list[tuple] = []
        self.prefix_resets = 0
        config = SimpleNamespace(tie_word_embeddings=tied)
        core = type("InprocClient" if in_process else "SyncMPClient", (), {})()
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(hf_config=config), engine_core=core)

    def generate(self, requests, params, use_tqdm=True):
        self.calls.append(("generate", requests, params))
        outs = []
        for req, p in zip(requests, params, strict=True):
            seed = p.kwargs["seed"] or 0
            chars = "ab"[seed % 2] + "cd"[len(req["prompt_token_ids"]) % 2]
            ids = self.tokenizer(chars, add_special_tokens=False)["input_ids"] + [EOS]
            outs.append(request_output(completion(ids, text=chars)))
        return outs

    def collective_rpc(self, method, kwargs):
        if "weights_path" in kwargs:  # the temporary file only lives during the call: read it now
            files = Path(kwargs["weights_path"]).glob("*.safetensors")
            kwargs = {**kwargs, "files": {f.name: load_file(str(f)) for f in files}}
        self.calls.append(("rpc", method, kwargs))

    def reset_prefix_cache(self):
        self.prefix_resets += 1

    def sleep(self, level):
        self.calls.append(("sleep", level))

    def wake_up(self):
        self.calls.append(("wake_up",))


@pytest.fixture
def tok():
    return CharTokenizer()


def make_policy(tok, **kwargs):
    sleep = kwargs.pop("sleep_mode_enabled", False)
    llm = FakeLLM(tok, **kwargs)
    return VLLMPolicy.from_llm(
        llm, tok, sleep_mode_enabled=sleep, sampling_params_cls=FakeSamplingParams
    ), llm


# -- pure helpers ----------------------------------------------------------------------------------
def test_derive_seeds():
    assert derive_seeds(None, 3) == [None, None, None]
    seeds = derive_seeds(7, 64)
    assert seeds == derive_seeds(7, 64) and len(set(seeds)) == 64
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    # Round t seeds with s + t (DAPAgent): row r of seed s must not reuse row r - 1 of seed s + 1.
    assert not set(derive_seeds(8, 64)) & set(seeds)
    assert derive_seeds(-1, 2) != derive_seeds(1, 2) and derive_seeds(0, 0) == []
    with pytest.raises(TypeError, match="seed must be an int"):
        derive_seeds(1.5, 2)
    with pytest.raises(ValueError, match="count"):
        derive_seeds(0, -1)


def test_encode_prompt_adds_bos_once(tok):
    ids = encode_prompt(tok, "1+2=")
    assert ids[0] == tok.bos_token_id and tok.decode(ids[1:]) == "1+2="
    assert encode_prompt(tok, "<bos>1+2=") == tok("<bos>1+2=", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="encodes to no tokens"):
        encode_prompt(CharTokenizer(add_bos=False), "")


def test_check_generate_args():
    sampling, n = check_generate_args(["a"], None, SamplingParams(n=3))
    assert n == 3 and sampling.n == 3
    assert check_generate_args([], 2, None)[1] == 2
    with pytest.raises(TypeError, match="SamplingParams"):
        check_generate_args(["a"], 1, {"temperature": 1.0})
    for bad_n in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n must be"):
            check_generate_args(["a"], bad_n, None)
    with pytest.raises(TypeError, match="sequence of prompts"):
        check_generate_args("abc", 1, None)


def test_vllm_sampling_kwargs():
    s = SamplingParams(temperature=0.7, top_p=0.9, top_k=5, max_new_tokens=9, stop=("\n", "##"))
    kw = vllm_sampling_kwargs(s, seed=11)
    assert kw["n"] == 1 and kw["seed"] == 11 and kw["logprobs"] == 0
    assert (kw["temperature"], kw["top_p"], kw["top_k"], kw["max_tokens"]) == (0.7, 0.9, 5, 9)
    assert (
        kw["stop"] == ["\n", "##"] and kw["include_stop_str_in_output"] is False and kw["skip_special_tokens"]
    )
    greedy = vllm_sampling_kwargs(SamplingParams(temperature=0, top_p=0.5, top_k=3), seed=None)
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"], greedy["stop"]) == (0.0, 1.0, 0, None)


def test_sampled_logprobs():
    entries = [
        {5: SimpleNamespace(logprob=-1.0)},
        {6: SimpleNamespace(logprob=-2.0), 9: SimpleNamespace(logprob=-0.1)},
    ]
    assert sampled_logprobs([5, 6], entries) == [-1.0, -2.0]  # the sampled token, not the top-1
    assert sampled_logprobs([5], [{5: -0.25}]) == [-0.25]
    with pytest.raises(RuntimeError, match="no logprobs"):
        sampled_logprobs([5], None)
    with pytest.raises(RuntimeError, match="2 logprob positions for 1 tokens"):
        sampled_logprobs([5], entries)
    with pytest.raises(RuntimeError, match="no logprob for sampled token 7"):
        sampled_logprobs([7], [{5: -1.0}])


def test_outputs_to_generations_groups_prompt_major():
    outs = [
        request_output(completion([10, EOS], "x", "stop")),
        request_output(completion([11, 12], "yz", "length")),
        request_output(completion([13], "w", "stop")),
        request_output(completion([14, 15], "uv", "length")),
    ]
    gens = outputs_to_generations(outs, 2, [[1, 4], [1, 5, 6]])
    assert isinstance(gens, Generations)
    assert gens.texts == [["x", "yz"], ["w", "uv"]]
    assert gens.token_ids == [[[10, EOS], [11, 12]], [[13], [14, 15]]]
    assert gens.finish_reasons == [["stop", "length"], ["stop", "length"]]
    assert gens.logprobs[0][1] == [-0.5, -1.0] and gens.prompt_token_ids == [[1, 4], [1, 5, 6]]
    assert gens.flat_texts() == ["x", "yz", "w", "uv"]
    with pytest.raises(RuntimeError, match="4 outputs for 1 prompts x n=2"):
        outputs_to_generations(outs, 2, [[1]])
    with pytest.raises(RuntimeError, match="finish_reason='abort'"):
        outputs_to_generations([request_output(completion([3], "a", "abort"))], 1, [[1]])
    with pytest.raises(RuntimeError, match="one completion per vLLM request"):
        outputs_to_generations([request_output(completion([3]), completion([4]))], 1, [[1]])


def test_llm_engine_kwargs_validation(tmp_path):
    base = dict(
        dtype="auto",
        gpu_memory_utilization=0.5,
        enable_prefix_caching=True,
        enable_sleep_mode=False,
        seed=3,
        max_model_len=None,
        logprobs_mode="processed_logprobs",
        llm_kwargs={"enforce_eager": True},
    )
    kw = llm_engine_kwargs(tmp_path, None, **base)
    assert kw["model"] == kw["tokenizer"] == str(tmp_path) and kw["enforce_eager"] is True
    assert kw["logprobs_mode"] == "processed_logprobs" and "max_model_len" not in kw
    assert llm_engine_kwargs(tmp_path, "tok_dir", **{**base, "max_model_len": 128})["max_model_len"] == 128
    bad = [
        ({"gpu_memory_utilization": 0.0}, ValueError, "gpu_memory_utilization"),
        ({"gpu_memory_utilization": 1.5}, ValueError, "gpu_memory_utilization"),
        ({"max_model_len": 0}, ValueError, "max_model_len"),
        ({"logprobs_mode": "processed_logits"}, ValueError, "logprobs_mode"),
        ({"seed": True}, TypeError, "seed"),
        ({"dtype": torch.float32}, TypeError, "dtype"),
        ({"llm_kwargs": {"seed": 1, "model": "x"}}, TypeError, r"\['model', 'seed'\]"),
    ]
    for change, error, match in bad:
        with pytest.raises(error, match=match):
            llm_engine_kwargs(tmp_path, None, **{**base, **change})
    with pytest.raises(TypeError, match="model_path"):
        llm_engine_kwargs("", None, **base)


def test_constructor_validates_before_importing_vllm(tmp_path):
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        VLLMPolicy(tmp_path, gpu_memory_utilization=2.0)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ImportError, match="setup_vllm_venv"):
            VLLMPolicy(tmp_path)


def test_state_dict_io(tmp_path):
    emb = torch.randn(4, 3)
    state = {EMBED_NAME: emb, HEAD_NAME: emb, "model.norm.weight": torch.ones(3)}  # tied: shared storage
    file = tmp_path / "w.safetensors"
    write_safetensors(list(state.items()), file)
    loaded = read_state_dict(file)
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    (tmp_path / "dir").mkdir()
    save_file({"model.norm.weight": torch.ones(3)}, str(tmp_path / "dir" / "model.safetensors"))
    assert list(read_state_dict(tmp_path / "dir")) == ["model.norm.weight"]
    torch.save({"a": torch.zeros(2)}, tmp_path / "w.pt")
    assert torch.equal(read_state_dict(tmp_path / "w.pt")["a"], torch.zeros(2))
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(TypeError, match="does not hold a state dict"):
        read_state_dict(tmp_path / "list.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        read_state_dict(tmp_path / "empty")


def test_complete_tied_weights():
    emb = torch.randn(4, 3)
    assert complete_tied_weights({EMBED_NAME: emb}, tied=True)[HEAD_NAME] is emb
    assert HEAD_NAME not in complete_tied_weights({EMBED_NAME: emb}, tied=False)
    other = torch.randn(4, 3)
    assert complete_tied_weights({EMBED_NAME: emb, HEAD_NAME: other}, tied=True)[HEAD_NAME] is other
    assert complete_tied_weights({"model.norm.weight": emb}, tied=True) == {"model.norm.weight": emb}


# -- the policy against a fake engine --------------------------------------------------------------
def test_generate_builds_one_seeded_request_per_sample(tok):
    policy, llm = make_policy(tok)
    assert isinstance(policy, Policy) and policy.tokenizer is tok
    gens = policy.generate(
        ["1+2=", "hi"], n=3, sampling=SamplingParams(temperature=0.8, max_new_tokens=5, seed=4)
    )
    _, requests, params = llm.calls[-1]
    assert [r["prompt_token_ids"] for r in requests] == [encode_prompt(tok, "1+2=")] * 3 + [
        encode_prompt(tok, "hi")
    ] * 3
    assert [p.kwargs["seed"] for p in params] == derive_seeds(4, 6)
    assert all(p.kwargs["temperature"] == 0.8 and p.kwargs["max_tokens"] == 5 for p in params)
    assert gens.prompt_token_ids == [encode_prompt(tok, "1+2="), encode_prompt(tok, "hi")]
    assert [len(t) for t in gens.texts] == [3, 3]
    expected = [
        [
            "ab"[s % 2] + "cd"[len(r["prompt_token_ids"]) % 2]
            for s, r in zip(derive_seeds(4, 6)[3 * i : 3 * i + 3], requests[3 * i : 3 * i + 3])
        ]
        for i in range(2)
    ]
    assert gens.texts == expected
    assert all(ids[-1] == EOS for per in gens.token_ids for ids in per)
    assert all(math.isfinite(x) for per in gens.logprobs for lps in per for x in lps)
    unseeded = policy.generate(["x"], sampling=SamplingParams(max_new_tokens=2))
    assert [p.kwargs["seed"] for p in llm.calls[-1][2]] == [None] and len(unseeded.texts) == 1
    chat = policy.generate([[{"role": "user", "content": "2+2="}]], sampling=SamplingParams(max_new_tokens=2))
    assert tok.decode(chat.prompt_token_ids[0], skip_special_tokens=True) == "user: 2+2=\nassistant: "
    calls = len(llm.calls)
    assert policy.generate([], n=2).texts == [] and len(llm.calls) == calls  # no engine call


def test_load_weights_state_dict_and_paths(tok, tmp_path):
    policy, llm = make_policy(tok, tied=True)
    emb = torch.randn(4, 3, requires_grad=True)
    policy.load_weights({EMBED_NAME: emb})
    _, method, kwargs = llm.calls[-1]
    assert method == "reload_weights" and dict(kwargs["weights_iterator"]).keys() == {EMBED_NAME, HEAD_NAME}
    assert not any(t.requires_grad for _, t in kwargs["weights_iterator"])
    assert llm.prefix_resets == 1 and policy.weights_version == 1
    # a directory: untied models let vLLM read it (weights_path); tied ones are read here and re-tied
    save_file({EMBED_NAME: torch.ones(4, 3)}, str(tmp_path / "model.safetensors"))
    policy.load_weights(tmp_path)
    assert dict(llm.calls[-1][2]["weights_iterator"]).keys() == {EMBED_NAME, HEAD_NAME}
    untied, untied_llm = make_policy(tok, tied=False)
    untied.load_weights(tmp_path)
    assert untied_llm.calls[-1][2]["weights_path"] == str(tmp_path) and untied_llm.prefix_resets == 1
    # a separate engine process: tensors go through a temporary safetensors file
    remote, remote_llm = make_policy(tok, tied=True, in_process=False)
    remote.load_weights({EMBED_NAME: torch.full((4, 3), 2.0)})
    files = remote_llm.calls[-1][2]["files"]
    assert set(files["model.safetensors"]) == {EMBED_NAME, HEAD_NAME}
    assert torch.equal(files["model.safetensors"][HEAD_NAME], torch.full((4, 3), 2.0))
    with pytest.raises(FileNotFoundError):
        policy.load_weights(tmp_path / "missing")
    with pytest.raises(TypeError, match="state dict or a path"):
        policy.load_weights(3)
    with pytest.raises(TypeError, match="expected a tensor"):
        policy.load_weights({EMBED_NAME: [1.0]})
    with pytest.raises(ValueError, match="empty state dict"):
        policy.load_weights({})
    assert policy.weights_version == 2


def test_sleep_disabled_warns_and_does_nothing(tok):
    policy, llm = make_policy(tok)
    with pytest.warns(UserWarning, match="sleep"):
        policy.sleep()
    with pytest.warns(UserWarning, match="wake_up"):
        policy.wake_up()
    assert not policy.sleeping and not [c for c in llm.calls if c[0] in ("sleep", "wake_up")]
    with pytest.raises(ValueError, match="sleep level"):
        policy.sleep(3)


def test_sleep_levels(tok):
    policy, llm = make_policy(tok, sleep_mode_enabled=True)
    policy.sleep(level=1)
    assert policy.sleeping and llm.calls[-1] == ("sleep", 1)
    with pytest.raises(RuntimeError, match="asleep"):
        policy.generate(["a"])
    with pytest.raises(RuntimeError, match="asleep"):
        policy.load_weights({EMBED_NAME: torch.zeros(4, 3)})
    policy.wake_up()
    assert not policy.sleeping and llm.calls[-1] == ("wake_up",) and llm.prefix_resets == 1
    policy.generate(["a"], sampling=SamplingParams(max_new_tokens=2))
    policy.sleep(level=2)
    policy.wake_up()
    with pytest.raises(RuntimeError, match="discarded the weights"):
        policy.generate(["a"])
    policy.load_weights({EMBED_NAME: torch.zeros(4, 3)})
    assert len(policy.generate(["a"], sampling=SamplingParams(max_new_tokens=2)).texts) == 1
