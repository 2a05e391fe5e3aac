"""The one-import public API of ``oat_agents``: every exported name resolves, and the import itself is cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import oat_agents


@pytest.mark.parametrize("name", oat_agents.__all__)
def test_every_exported_name_imports(name: str) -> None:
    value = getattr(oat_agents, name)
    assert value is not None
    # The exported object is the one its defining module holds (no copies, no wrappers).
    assert getattr(sys.modules[oat_agents._LOCATIONS[name]], name) is value


def test_star_import_gives_all_names() -> None:
    namespace: dict = {}
    exec("from oat_agents import *", namespace)
    assert set(oat_agents.__all__) <= set(namespace)


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchAgent'"):
        oat_agents.NoSuchAgent  # noqa: B018


def test_import_is_cheap() -> None:
    # A fresh interpreter: importing the package alone must not pull in torch, DeepSpeed or vLLM.
    code = "import sys, oat_agents; print(sorted(m for m in ('torch', 'deepspeed', 'vllm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
