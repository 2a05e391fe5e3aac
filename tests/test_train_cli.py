"""``oat-train``: the help documents every option, bad input fails clearly, a tiny run writes its outputs."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import subprocess
import sys
import textwrap
import time
import typing
from pathlib import Path

import pytest
from conftest import subprocess_env

from oat_agents.cli.train import TrainConfig, main, plain_doc

_BOX = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛]")


def _normalise(text: str) -> str:
    """Help text without rich's box drawing and with all whitespace runs collapsed to one space."""
    return " ".join(_BOX.sub(" ", text).split())


def _field_docs(cls: type) -> dict[str, str]:
    """Field docs of a dataclass as tyro reads them: the string literal right after
    ``name: type = default``, else the ``#`` comment lines right above it; a field a base class declares
    (e.g. the agents' shared sampling block) has the doc of the closest class that declares it."""
    docs: dict[str, str] = {}
    for base in reversed([b for b in cls.__mro__ if dataclasses.is_dataclass(b)]):
        docs.update(_own_field_docs(base))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    """The field docs written in ``cls``'s own body."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    body = ast.parse(source).body[0].body
    docs = {}
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(nxt.value.value)
            continue
        comments, row = [], node.lineno - 2  # 0-based index of the line above the field
        while row >= 0 and lines[row].strip().startswith("#"):
            comments.insert(0, lines[row].strip()[1:].strip())
            row -= 1
        if comments:
            docs[node.target.id] = " ".join(comments)
    return docs


def _options(cls: type, prefix: str = "") -> list[tuple[str, str, bool]]:
    """``(flag, doc, is_group)`` for every field of ``cls`` and, recursively, of nested dataclasses."""
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        flag = f"--{prefix}{f.name.replace('_', '-')}"
        assert f.name in docs, f"{cls.__name__}.{f.name} has no docstring"
        nested = dataclasses.is_dataclass(hints[f.name])
        out.append((flag, docs[f.name], nested))
        if nested:
            out.extend(_options(hints[f.name], f"{prefix}{f.name}."))
    return out


@pytest.fixture(scope="module")
def help_text() -> str:
    script = Path(sys.executable).parent / "oat-train"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "oat_agents.cli.train"]
    # One column: wider terminals make tyro lay groups out side by side, interleaving their lines.
    env = subprocess_env(COLUMNS="80", OMP_NUM_THREADS="1")
    out = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_help_documents_every_option(help_text: str) -> None:
    text = _normalise(help_text)
    options = _options(TrainConfig)
    # The walk itself must reach the nested configs (DAP loss options live two levels down).
    flags = {flag for flag, _, _ in options}
    assert {
        "--agent.dap.beta",
        "--learner.zero-stage",
        "--loop.resume",
        "--warmup.steps",
        "--env-kwargs",
    } <= flags
    assert {"--rl.pg.loss-agg", "--critic.learning-rate", "--vllm.gpu-memory-utilization", "--preset"} <= flags
    assert len(options) > 100
    for flag, doc, is_group in options:
        if not is_group:  # a nested config is a group heading, not a flag
            assert re.search(re.escape(flag) + r"(?![\w.-])", text), f"{flag} is missing from --help"
        # The help shows the docs without their reStructuredText markup.
        assert _normalise(plain_doc(doc)) in text, f"the doc of {flag} is missing from --help: {doc!r}"


def test_help_has_no_rst_markup(help_text: str) -> None:
    assert "``" not in help_text
    assert not re.search(r":(class|func|meth|mod|attr|data|obj):`", help_text)
    # ... though the docs it shows had some (the library's docstrings are written for Sphinx)
    assert any("``" in doc or ":class:`" in doc for _, doc, _ in _options(TrainConfig))
    for algo in ("dpo", "ipo", "slic", "simpo", "ld_dpo", "sea", "apl", "xpo", "grpo", "dr_grpo", "rloo", "ppo"):
        assert algo in text_words(help_text), f"--help does not mention --algo {algo}"


def text_words(text: str) -> set[str]:
    return set(re.findall(r"[\w.-]+", text))


@pytest.mark.parametrize(
    ("env_kwargs", "problem"),
    [
        ("not json", "must be a JSON object"),
        ('["template", "bare"]', "must be a JSON object"),
        ("{'a': 1}", "JSON"),
    ],
)
def test_bad_env_kwargs_is_a_clear_error(env_kwargs: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        main(["--env-kwargs", env_kwargs, "--loop.log-dir", str(tmp_path), "--loop.no-progress"])
    assert "--env-kwargs" in str(info.value) and env_kwargs in str(info.value)
    assert not (tmp_path / "metrics.jsonl").exists()  # fails before anything is built or written


def test_tiny_end_to_end_run_writes_metrics_curves_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    log_dir = tmp_path / "run"
    start = time.perf_counter()
    summary = main(
        [
            "--env-kwargs",
            '{"template": "bare", "operators": "+", "max_digits": 2}',
            "--num-envs",
            "8",
            "--warmup.steps",
            "20",
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
            "1e-3",
            "--loop.total-queries",
            "32",
            "--loop.eval-query-interval",
            "16",
            "--loop.num-eval-prompts",
            "16",
            "--loop.log-dir",
            str(log_dir),
            "--loop.no-progress",
        ]
    )
    elapsed = time.perf_counter() - start
    printed = capsys.readouterr().out

    assert summary.result.queries == 32 and summary.result.rounds == 4
    rows = [json.loads(line) for line in (log_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/loss" in r]
    eval_rows = [r for r in rows if "eval/win_rate" in r]
    assert [r["misc/queries"] for r in train_rows] == [8, 16, 24, 32]
    assert [r["queries"] for r in eval_rows] == [0, 16, 32]  # before, at every interval, after
    assert all(0.0 <= r["eval/win_rate"] <= 1.0 for r in eval_rows)
    assert train_rows[-1]["regret/cumulative"] > 0

    curves = log_dir / "curves.png"
    assert summary.plot_path == curves
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and curves.stat().st_size > 5_000
    assert json.loads((log_dir / "config.json").read_text())["num_envs"] == 8

    header = next(line for line in printed.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "before", "after", "change"]
    win_rate = next(line for line in printed.splitlines() if line.startswith("eval/win_rate")).split()
    assert float(win_rate[1]) == pytest.approx(eval_rows[0]["eval/win_rate"], abs=1e-3)
    assert float(win_rate[2]) == pytest.approx(eval_rows[-1]["eval/win_rate"], abs=1e-3)
    assert re.search(r"oracle queries\s+0\s+32", printed)
    assert elapsed < 120, f"the tiny run took {elapsed:.0f}s"  # ~8 s on an idle core; generous for CI load


TINY_ARGS = [
    "--env-kwargs", '{"template": "bare", "operators": "+", "max_digits": 1}', "--num-envs", "4",
    "--warmup.steps", "5", "--tiny-hidden", "32", "--tiny-layers", "1", "--tiny-heads", "2",
    "--agent.num-samples", "3", "--agent.max-new-tokens", "3", "--agent.max-seq-length", "12",
    "--learner.zero-stage", "0", "--learner.micro-batch-size", "8",
    "--loop.total-queries", "16", "--loop.eval-query-interval", "0", "--loop.no-progress", "--no-plot",
]  # fmt: skip


@pytest.mark.parametrize(
    ("algo_args", "metric"),
    [
        (["--algo", "sea", "--explorer.method", "bai_ts", "--explorer.num-members", "4",
          "--rollout-fraction", "0.5", "--rollout-min-queries", "4"], "explorer/model_data_ratio"),
        (["--algo", "apl", "--apl-prompt-pool-size", "8"], "explorer/apl_pool_entropy"),
        (["--algo", "xpo", "--xpo-alpha", "0.01"], "train/xpo_term"),
    ],
)
def test_exploring_agents_run_from_the_cli(algo_args: list[str], metric: str, tmp_path: Path) -> None:
    summary = main([*TINY_ARGS, "--loop.log-dir", str(tmp_path), *algo_args])
    assert summary.result.queries == 16 and summary.result.rounds == 4  # model rollouts are not queries
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(metric in r for r in rows), f"{metric} was never logged"
    if "sea" in algo_args:
        assert rows[-1]["explorer/model_data_ratio"] == pytest.approx(0.5)  # rollouts once 4 labels were seen


def test_apl_pool_must_exceed_num_envs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must exceed --num-envs"):
        main([*TINY_ARGS, "--loop.log-dir", str(tmp_path), "--algo", "apl", "--apl-prompt-pool-size", "4"])


@pytest.mark.parametrize(
    ("script", "expected"),
    [("tldr_online_dpo.sh", {"--algo", "--explorer.method", "--learner.gradient-checkpointing"}),
     ("math_drgrpo.sh", {"--algo", "--rl.collocate", "--rl.pg.tis-cap", "--vllm.gpu-memory-utilization"})],
)
def test_gpu_recipes_use_only_real_oat_train_options(script: str, expected: set[str]) -> None:
    """The GPU recipes cannot run here (GPU, hub); at least every flag they pass must exist, and they are
    oat-train command lines."""
    text = (Path(__file__).resolve().parents[1] / "examples" / script).read_text()
    # Code lines only: comments and the closing echo mention other tools' flags (torchrun, tensorboard).
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("#", "echo")))
    assert "oat-train" in code
    used = set(re.findall(r"(?<![\w-])(--[a-z][\w.-]*)", code))
    flags = {flag for flag, _, is_group in _options(TrainConfig) if not is_group}
    # Boolean fields also have a --no-<name> form; tyro accepts both.
    known = flags | {f"--{f[2:].rsplit('.', 1)[0]}.no-{f.rsplit('.', 1)[-1]}" if "." in f else f"--no-{f[2:]}"
                     for f in flags}
    assert expected <= used
    assert used <= known, f"not oat-train options: {sorted(used - known)}"


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--rollout-fraction", "0.5"], "--rollout-fraction (--algo sea)"),
     (["--algo", "sea", "--xpo-alpha", "0.1"], "--xpo-alpha (--algo xpo)"),
     (["--explorer.method", "ee_ts"], "--explorer.* (--algo sea)")],
)
def test_options_of_another_algo_are_refused(args: list[str], flag: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="would be ignored") as info:
        main([*TINY_ARGS, "--loop.log-dir", str(tmp_path), *args])
    assert flag in str(info.value)
    assert not (tmp_path / "metrics.jsonl").exists()  # refused before anything ran


def test_too_many_eval_prompts_are_refused_before_any_model_is_built(monkeypatch):
    import oat_agents.cli.build as build_module
    import oat_agents.cli.train as train_module

    def no_models(*args, **kwargs):
        raise AssertionError("a model was built before the evaluation size was checked")

    monkeypatch.setattr(build_module, "build_models", no_models)
    config = train_module.TrainConfig(env_kwargs=json.dumps({"min_digits": 1, "max_digits": 1, "operators": "+",
                                                             "eval_fraction": 0.4}))
    config.loop.num_eval_prompts = 50  # single-digit sums hold out 33 problems
    with pytest.raises(ValueError, match=r"--loop.num-eval-prompts 50 .* \(33\); pass --loop.num-eval-prompts 33"):
        train_module.train(config)


def test_share_prefill_is_an_hf_backend_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--share-prefill is an HF-backend option"):
        main([*TINY_ARGS, "--loop.log-dir", str(tmp_path), "--backend", "vllm", "--share-prefill"])


def test_share_prefill_and_share_prompt_reach_the_policy_and_learner(tmp_path: Path, monkeypatch) -> None:
    from oat_agents.agents.dap import DAPAgent

    seen: list[tuple[bool, bool]] = []
    learn = DAPAgent.learn

    def recording_learn(self):
        seen.append((self.policy.share_prefill, self.learner.config.share_prompt))
        return learn(self)

    monkeypatch.setattr(DAPAgent, "learn", recording_learn)
    summary = main([*TINY_ARGS, "--loop.log-dir", str(tmp_path), "--share-prefill", "--learner.share-prompt"])
    assert summary.result.queries == 16 and seen and set(seen) == {(True, True)}
