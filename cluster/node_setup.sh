#!/bin/sh
# The node set-up of cluster/local.yaml (its setup_commands run it on every machine, from the repository copy
# that `ray up` put at ~/tlsweep): ~/tlsweep-venv with tlsweep and its pinned dependencies, activated in ~/.bashrc.
#
#   TLSWEEP_NODE_VENV=/path/.venv   reuse that venv as it is (it must hold tlsweep, ray and torch, and ssh_user must
#                                   be able to run its python): ~/tlsweep-venv becomes a link to it, nothing is
#                                   installed. The nodes then run the tlsweep that venv holds.
#   TLSWEEP_WHEELHOUSE=/path/wheels a new venv, installed from the wheels in that folder only (pip --no-index).
#   neither                         a new venv from PyPI; on a machine without nvidia-smi, torch and torchvision come
#                                   from PyTorch's CPU-only index first (about 0.2 GB instead of 6.6 GB with CUDA).
# A wrong path stops `ray up` with one line naming the variable.
set -eu

VENV="$HOME/tlsweep-venv"
REPO="$HOME/tlsweep"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

fail() {
  echo "$1" >&2
  exit 2
}

if [ -n "${TLSWEEP_NODE_VENV:-}" ]; then
  [ -n "${TLSWEEP_WHEELHOUSE:-}" ] && fail "TLSWEEP_NODE_VENV and TLSWEEP_WHEELHOUSE: set one of the two"
  "$TLSWEEP_NODE_VENV/bin/python" -c "import orchestrator, ray, torch" 2>/dev/null ||
    fail "TLSWEEP_NODE_VENV=$TLSWEEP_NODE_VENV: no venv with tlsweep, ray and torch that $(id -un) can run on $(hostname)"
  [ -L "$VENV" ] || [ ! -e "$VENV" ] || fail "$VENV: a venv of its own is in the way of TLSWEEP_NODE_VENV; remove it"
  ln -sfn "$TLSWEEP_NODE_VENV" "$VENV"
else
  if [ -n "${TLSWEEP_WHEELHOUSE:-}" ] && [ ! -d "$TLSWEEP_WHEELHOUSE" ]; then
    fail "TLSWEEP_WHEELHOUSE=$TLSWEEP_WHEELHOUSE: no such folder on $(hostname)"
  fi
  [ ! -L "$VENV" ] || rm "$VENV"   # left by an earlier TLSWEEP_NODE_VENV
  python3 -m venv "$VENV"
  if [ -n "${TLSWEEP_WHEELHOUSE:-}" ]; then
    "$VENV/bin/pip" install --quiet --no-index --find-links "$TLSWEEP_WHEELHOUSE" -e "$REPO"
  else
    "$VENV/bin/pip" install --quiet --upgrade pip
    if ! command -v nvidia-smi >/dev/null 2>&1; then
      # the pins of pyproject.toml; pip then keeps this torch (2.14.1+cpu satisfies torch==2.14.1)
      pins=$(sed -n 's/^ *"\(torch==[^"]*\)",*$/\1/p; s/^ *"\(torchvision==[^"]*\)",*$/\1/p' "$REPO/pyproject.toml")
      # shellcheck disable=SC2086  # one word per pin
      "$VENV/bin/pip" install --quiet --index-url "$CPU_INDEX" $pins
    fi
    "$VENV/bin/pip" install --quiet -e "$REPO"
  fi
fi
grep -q tlsweep-venv "$HOME/.bashrc" 2>/dev/null || echo 'source ~/tlsweep-venv/bin/activate' >> "$HOME/.bashrc"
