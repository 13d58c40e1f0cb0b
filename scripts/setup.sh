#!/usr/bin/env bash
# Creates the project venv (.venv) from requirements.lock. Idempotent: a venv
# whose lock hash matches is reused, so the second call costs a second.
#
# Why Python 3.10: tfx 1.16.0 is the newest TFX whose every dependency installs
# on glibc 2.36 (tfx 1.16's pins); it supports Python <= 3.10.
# Why pip inside the venv: TFX installs a `module_file` with `python -m pip`.
# Why --compile-bytecode: uv does not write .pyc files by default, and where
# PYTHONDONTWRITEBYTECODE=1 is set (it is on these machines) Python never writes
# them either, so every process would recompile TensorFlow, TFX, Beam and Airflow
# from source at import: `import tfx.v1` took 35 s instead of 12 s, and every
# Airflow task, Beam stage and test subprocess pays that.
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

SETUP_REV=bytecode-1   # bump when the venv must be rebuilt for a reason the lock does not show
LOCK_HASH=$( (sha256sum requirements.lock pyproject.toml; echo "$SETUP_REV") | sha256sum | cut -c1-16)
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
echo "[setup] syncing requirements.lock and compiling it to bytecode (first time: ~2-3 min)"
"$VENV/bin/uv" pip sync --python "$VENV/bin/python" --quiet --compile-bytecode requirements.lock
# uv pip sync removes what the lock does not name, pip included: put pip and uv back.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet --compile-bytecode pip "uv==0.13.9"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet --no-deps --config-settings editable_mode=compat -e .
echo "$LOCK_HASH" > "$STAMP"
echo "[setup] done: $VENV"
