"""``oat-train --algo <each>``: every algorithm runs a short CPU job on its env; a wrong env kind is refused before
anything is built; the defaults follow --algo and --preset; --seed derives every component seed."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import gymnasium as gym
import pytest

import oat_env  # noqa: F401  (registers the env ids)
from oat_agents.cli import algos
from oat_agents.cli.train import TrainConfig, main, parse_args, train

# A tiny model, 5 warm-up steps, 4 prompts per round, 16 queries, two evaluations on 4 held-out prompts.
COMMON = [
    "--warmup.steps", "5", "--tiny-hidden", "32", "--tiny-layers", "1", "--tiny-heads", "2", "--num-envs", "4",
    "--learner.micro-batch-size", "8", "--loop.total-queries", "16", "--loop.eval-query-interval", "8",
    "--loop.num-eval-prompts", "4", "--loop.no-progress", "--no-plot", "--loop.no-tensorboard",
]  # fmt: skip
DUEL = ["--agent.num-samples", "3", "--agent.max-new-tokens", "3", "--agent.max-seq-length", "12"]
GROUP = ["--rl.num-samples", "2", "--rl.max-new-tokens", "3", "--rl.max-seq-length", "12"]
TURN = ["--turn.max-new-tokens", "3", "--turn.max-seq-length", "48", "--turn.min-turns-to-learn", "4"]
ALGO_ARGS = {
    **{a: DUEL for a in ("dpo", "ipo", "slic", "simpo", "ld_dpo", "xpo")},
    "sea": [*DUEL, "--explorer.num-members", "4"],
    "apl": [*DUEL, "--apl-prompt-pool-size", "8"],
    **{a: GROUP for a in ("grpo", "dr_grpo", "rloo", "reinforce")},
    "ppo": TURN,
}
# What shows that the algo itself ran (a metric only its agent/loss logs).
ALGO_METRIC = {"sea": "explorer/model_pairs", "apl": "explorer/apl_margin", "xpo": "train/xpo_term",
               "ppo": "critic/value_loss"}  # fmt: skip


def _rows(log_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]


def test_every_algo_is_covered() -> None:
    import typing

    choices = typing.get_args(typing.get_type_hints(TrainConfig)["algo"])
    assert set(ALGO_ARGS) == set(algos.ALGOS) == set(algos.FITS) == set(choices)


@pytest.mark.parametrize("algo", list(ALGO_ARGS))
def test_each_algo_runs_a_short_cpu_job(algo: str, tmp_path: Path) -> None:
    summary = main(
        ["--algo", algo, *COMMON, *ALGO_ARGS[algo], "--seed", "3", "--loop.log-dir", str(tmp_path)]
    )
    assert summary.result.queries == 16
    rows = _rows(tmp_path)
    assert any("train/loss" in r for r in rows), "the agent never learned"
    assert [r["queries"] for r in rows if "eval/accuracy" in r] == [0, 8, 16]
    if algo in ALGO_METRIC:
        assert any(ALGO_METRIC[algo] in r for r in rows), f"{ALGO_METRIC[algo]} was never logged"
    config = json.loads((tmp_path / "config.json").read_text())
    kind = algos.FITS[algo][0]
    assert config["env_id"] == algos.DEFAULT_ENV[kind] and config["algo"] == algo
    if algo in algos.DAP_LOSS:
        assert config["agent"]["dap"]["loss_type"] == algos.DAP_LOSS[algo]  # ld_dpo is the library's lr_dpo
    if algos.ALGOS[algo] in ("group", "turn"):
        block = config["turn" if kind == "multiturn" else "rl"]  # --turn.* on a multi-turn env, else --rl.*
        assert block["pg"]["advantage_estimator"] == algo
        assert block["pg"]["loss_agg"] == algos.PG_LOSS_AGG[algo]
    # One seed: every component's seed is the one given, and config.json records them.
    assert {k: v for k, v in config["seeds"].items() if k not in ("eval_seed", "per_rank")} == dict.fromkeys(
        ["seed", "model_init", "policy", "warmup", "agent", "rl", "turn", "explorer", "learner", "loop"], 3
    )
    assert config["learner"]["seed"] == config["warmup"]["seed"] == config["loop"]["seed"] == 3


def test_reinforce_runs_on_multi_turn_episodes_too(tmp_path: Path) -> None:
    kwargs = (
        '{"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare", "max_turns": 2, '
        '"feedback_wrong": "wrong", "feedback_unformatted": "wrong"}'
    )
    summary = main(
        [
            "--algo",
            "reinforce",
            "--env-id",
            "oat/MathMultiTurn-v0",
            "--env-kwargs",
            kwargs,
            *COMMON,
            *TURN,
            "--loop.log-dir",
            str(tmp_path),
        ]
    )
    assert summary.result.queries <= 16 and summary.result.evals
    assert "eval/success_rate" in summary.result.evals[-1]


# -- env kinds -----------------------------------------------------------------------------------------------------


def test_every_registered_id_has_its_kind_from_the_registration() -> None:
    """ENV_KINDS covers every id oat_env registers and agrees with what the vector factory returns."""
    from oat_env import registration

    assert set(algos.ENV_KINDS) == set(registration.ENV_FACTORIES)
    class_kind = {"DuelingVectorEnv": "duel", "VerifiableVectorEnv": "verifiable",
                  "ReasoningGymVectorEnv": "verifiable", "MultiTurnMathVectorEnv": "multiturn"}  # fmt: skip
    for env_id, (_, vector) in registration.ENV_FACTORIES.items():
        returns = inspect.signature(getattr(registration, vector)).return_annotation
        name = returns if isinstance(returns, str) else returns.__name__
        if name != "Any":  # ReasoningGym's factory says Any (its module is optional): built below
            assert class_kind[name] == algos.ENV_KINDS[env_id], env_id
        assert algos.env_kind(env_id) == algos.ENV_KINDS[env_id]


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("oat/Arithmetic-Duel-v0", {}),
        ("oat/Arithmetic-v0", {}),
        ("oat/Countdown-v0", {}),
        ("oat/MathMultiTurn-v0", {}),
        ("oat/ReasoningGym-v0", {"train_size": 16, "eval_size": 4}),
    ],
)
def test_the_kind_table_matches_the_envs_built(env_id: str, kwargs: dict) -> None:
    """The offline ids, built: their class is of the kind the table says (the hub ids need the network)."""
    if env_id == "oat/ReasoningGym-v0":
        pytest.importorskip("reasoning_gym")
    env = gym.make_vec(env_id, num_envs=1, **kwargs)
    assert algos._class_kind(type(env.unwrapped)) == algos.ENV_KINDS[env_id]
    env.close()


def test_a_user_registered_env_has_its_kind_from_its_entry_point() -> None:
    from oat_env.envs.verifiable import VerifiableVectorEnv

    gym.register(
        id="test13/Custom-v0",
        entry_point="oat_env.registration:make_arithmetic_env",
        vector_entry_point=VerifiableVectorEnv,
    )
    try:
        assert algos.env_kind("test13/Custom-v0") == "verifiable"
        with pytest.raises(ValueError, match="Algos for test13/Custom-v0: grpo, dr_grpo, rloo, reinforce"):
            algos.check_env_fits("dpo", "test13/Custom-v0")
    finally:
        gym.registry.pop("test13/Custom-v0")
    with pytest.raises(ValueError, match="not a registered env"):
        algos.check_env_fits("dpo", "oat/Nope-v0")


@pytest.mark.parametrize(
    ("algo", "env_id", "fits_env", "fits_algos"),
    [
        (
            "dpo",
            "oat/Arithmetic-v0",
            "oat/Arithmetic-Duel-v0, oat/TLDR-Duel-v0",
            "Algos for oat/Arithmetic-v0: grpo, dr_grpo, rloo, reinforce.",
        ),
        (
            "sea",
            "oat/MathMultiTurn-v0",
            "oat/UltraFeedback-Duel-v0",
            "Algos for oat/MathMultiTurn-v0: reinforce, ppo.",
        ),
        ("grpo", "oat/TLDR-Duel-v0", "oat/GSM8K-v0", "Algos for oat/TLDR-Duel-v0: dpo, ipo"),
        ("grpo", "oat/MathMultiTurn-v0", "oat/ReasoningGym-v0", "reinforce, ppo"),
        ("ppo", "oat/Arithmetic-v0", "Envs for --algo ppo: oat/MathMultiTurn-v0.", "grpo, dr_grpo"),
    ],
)
def test_a_wrong_env_kind_is_refused_before_anything_is_built(
    algo: str, env_id: str, fits_env: str, fits_algos: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One wrong pairing per family: the error names the envs that fit the algo and the algos that fit the env."""
    import oat_agents.cli.build as build

    def nothing(*args, **kwargs):
        raise AssertionError("something was built before the env kind was checked")

    monkeypatch.setattr(build, "build_env", nothing)
    monkeypatch.setattr(build, "build_models", nothing)
    with pytest.raises(ValueError) as info:
        main(["--algo", algo, "--env-id", env_id, "--loop.log-dir", str(tmp_path)])
    assert fits_env in str(info.value) and fits_algos in str(info.value)
    assert not any(tmp_path.iterdir())


# -- defaults, presets, options ------------------------------------------------------------------------------------


def test_the_field_defaults_are_plain_oat_train() -> None:
    assert TrainConfig() == algos.default_config() == parse_args([])


def test_defaults_follow_algo_and_preset() -> None:
    grpo = parse_args(["--algo", "grpo"])
    assert (grpo.rl.pg.advantage_estimator, grpo.rl.pg.loss_agg) == ("grpo", "seq_mean_token_mean")
    assert (grpo.num_envs, grpo.rl.num_samples, grpo.learner.learning_rate) == (
        16,
        8,
        3e-4,
    )  # the dr_grpo recipe
    assert parse_args(["--algo", "dr_grpo"]).rl.pg.loss_agg == "constant"
    assert parse_args(["--algo", "ppo"]).turn.turn_gamma == 0.9  # the multiturn recipe
    assert parse_args(["--algo", "sea"]).agent.num_samples == 4  # the sea recipe
    # a flag wins over the preset
    assert parse_args(["--algo", "grpo", "--learner.learning-rate", "1e-3"]).learner.learning_rate == 1e-3
    hub = parse_args(["--preset", "hub"])
    assert (hub.learner.zero_stage, hub.learner.dtype, hub.learner.learning_rate, hub.warmup.steps) == (
        2,
        "bf16",
        5e-7,
        0,
    )
    assert (
        parse_args(["--model", "some/hub-model", "--algo", "dr_grpo"]).learner.learning_rate == 1e-6
    )  # auto = hub


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--algo", "ipo", "--agent.dap.loss-type", "dpo"], "contradicts --algo ipo: pass --algo dpo"),
        (
            ["--algo", "grpo", "--rl.pg.advantage-estimator", "rloo"],
            "contradicts --algo grpo: pass --algo rloo",
        ),
        (["--agent.seed", "3"], "--agent.seed: component seeds are derived from --seed"),
        (["--seed", "2", "--learner.seed=2"], "--learner.seed: component seeds"),
        (["--algo", "dpo", "--rl.num-samples", "4"], "--rl.* (--algo grpo/dr_grpo/rloo/reinforce)"),
        # the two policy-gradient blocks: --rl.* for groups on a verifiable env, --turn.* on a multi-turn one
        (["--algo", "ppo", "--rl.num-samples", "4"], "--rl.* (--algo grpo/dr_grpo/rloo/reinforce)"),
        (["--algo", "reinforce", "--turn.turn-gamma", "0.5"], "--turn.* (--algo reinforce/ppo)"),
        (
            ["--algo", "ppo", "--turn.pg.advantage-estimator", "reinforce"],
            "contradicts --algo ppo: pass --algo reinforce",
        ),
        (
            ["--algo", "grpo", "--agent.temperature", "0.5"],
            "--agent.* (--algo dpo/ipo/slic/simpo/ld_dpo/sea/apl/xpo)",
        ),
        (["--algo", "reinforce", "--critic.learning-rate", "1e-3"], "--critic.* (--algo ppo)"),
    ],
)
def test_contradictions_are_refused(args: list[str], problem: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        main([*args, "--loop.log-dir", str(tmp_path)])
    assert problem in str(info.value)
    assert not any(tmp_path.iterdir())


def test_python_configs_get_the_algo_applied_and_stray_seeds_refused(tmp_path: Path) -> None:
    config = TrainConfig(algo="ipo")
    assert algos.apply_algo(config).agent.dap.loss_type == "ipo"  # from the default dpo
    config = TrainConfig(algo="rloo")
    assert algos.apply_algo(config).rl.pg.advantage_estimator == "rloo"
    config = TrainConfig(seed=1)
    config.learner.seed = 7
    with pytest.raises(
        ValueError, match=r"learner.seed=7: component seeds are derived from TrainConfig.seed \(1\)"
    ):
        train(config)


@pytest.mark.parametrize("algo", ["dpo", "grpo", "ppo"])
def test_too_many_eval_prompts_are_refused_for_every_loop(algo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The duel, group and multi-turn paths all check the held-out count before any model is built."""
    import oat_agents.cli.build as build

    def no_models(*args, **kwargs):
        raise AssertionError("a model was built before the evaluation size was checked")

    monkeypatch.setattr(build, "build_models", no_models)
    with pytest.raises(
        ValueError, match=r"--loop.num-eval-prompts 50 .* \(33\); pass --loop.num-eval-prompts 33"
    ):
        main(["--algo", algo, "--loop.num-eval-prompts", "50"])
