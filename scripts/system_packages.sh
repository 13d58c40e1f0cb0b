#!/usr/bin/env bash
# Debian packages installed only when missing: the ones named, or by default those the
# test suite needs beyond the venv:
#   chromium, chromium-driver: the real-browser test of the Airflow UI (Selenium drives
#   Debian's Chromium through Debian's ChromeDriver, so their versions always match;
#   nothing is downloaded by a test tool).
# (scripts/test.sh also asks for PostgreSQL and MariaDB, which scripts/databases.sh starts.)
# Runs as root, or through passwordless sudo. Idempotent: a second call costs a second.
set -euo pipefail
PKGS=("$@")
[ ${#PKGS[@]} -eq 0 ] && PKGS=(chromium chromium-driver)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[system] Debian packages present: ${PKGS[*]}"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ERROR: Debian packages ${missing[*]} are missing and installing them needs root." >&2
    echo "  Run: sudo apt-get install -y ${missing[*]}   (then rerun this command)" >&2
    exit 2
  fi
fi
echo "[system] installing ${missing[*]} with apt-get (first time: 1-3 min)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "[system] installed: ${missing[*]}"
