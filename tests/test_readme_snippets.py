"""The README's "Use oat envs from other tools" snippets run exactly as written (the OpenEnv one against a real
`oat-serve-env` on a free loopback port, substituted for the README's 8000)."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use oat envs from other tools", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    return out.getvalue()


def snippet(word: str) -> str:
    found = [s for s in snippets() if word in s]
    assert len(found) == 1, f"expected one README snippet using {word}"
    return found[0]


def test_the_section_has_the_four_snippets():
    assert len(snippets()) == 4


def test_trl_snippet():
    assert run(snippet("reward_function")).strip() == "[1.0, 0.0]"


def test_gymnasium_async_snippet():
    run(snippet('vectorization_mode="async"'))


def test_reasoning_gym_snippet():
    task, reward, n = run(snippet("ReasoningGym")).split()
    assert task in ("leg_counting", "basic_arithmetic") and 0.0 <= float(reward) <= 1.0 and n == "10"


@pytest.mark.timeout(120)
def test_openenv_snippet_against_a_real_server():
    server = subprocess.Popen(
        [sys.executable, "-m", "oat_env.integrations.openenv", "--env-id", "oat/Arithmetic-v0", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )
    try:
        line = server.stdout.readline()  # "oat-serve-env: serving oat/Arithmetic-v0 on http://127.0.0.1:PORT"
        port = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert port, line + server.stderr.read()
        lines = run(snippet("OatEnvClient").replace("8000", port.group(1))).splitlines()
        assert "?" in lines[0] or "=" in lines[0]  # the prompt
        reward, done, terminated = lines[1].split()
        assert float(reward) in (0.0, 1.0) and done == "True" and terminated == "True"
    finally:
        server.terminate()
        server.wait(timeout=30)
