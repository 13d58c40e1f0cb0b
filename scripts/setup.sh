#!/usr/bin/env bash
# Creates the project venv (.venv) from requirements.lock. Idempotent: a venv
# whose lock hash matches is reused, so the second call costs a second.
#
# Why Python 3.10: tfx 1.16.0 is the newest TFX whose every dependency installs
# on glibc 2.36 (see ../shared/STACK.md); it supports Python <= 3.10.
# Why pip inside the venv: TFX installs a `module_file` with `python -m pip`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"

find_python310() {
  local c
  for c in "${PYTHON310:-}" /root/.pyenv/versions/3.10*/bin/python3.10 \
           "$HOME"/.pyenv/versions/3.10*/bin/python3.10 \
           /usr/bin/python3.10 /usr/local/bin/python3.10 \
           "$(command -v python3.10 2>/dev/null || true)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}

PY=$(find_python310) || {
  echo "ERROR: no Python 3.10 interpreter found." >&2
  echo "  tfx 1.16.0 needs Python 3.10. Install one (pyenv install 3.10.13, or" >&2
  echo "  'uv python install 3.10') or point PYTHON310=/path/to/python3.10 at it." >&2
  exit 2
}

LOCK_HASH=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)
STAMP="$VENV/.lock-hash"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$LOCK_HASH" ] && [ -x "$VENV/bin/python" ]; then
  echo "[setup] .venv is up to date with requirements.lock ($LOCK_HASH)"
  exit 0
fi

echo "[setup] using $PY ($("$PY" --version 2>&1))"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
echo "[setup] installing uv into the venv"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
echo "[setup] syncing requirements.lock (first time: ~1-2 min)"
"$VENV/bin/uv" pip sync --python "$VENV/bin/python" --quiet requirements.lock
# uv pip sync removes what the lock does not name, pip included: put pip and uv back.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet pip "uv==0.13.9"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet --no-deps --config-settings editable_mode=compat -e .
echo "$LOCK_HASH" > "$STAMP"
echo "[setup] done: $VENV"
