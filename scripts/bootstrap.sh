#!/usr/bin/env bash
# Create .venv and install tickerplant with its test extras. Idempotent; re-run when
# pyproject.toml changes (the Makefile does that through a stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$candidate; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3.11 python3.11-venv >/dev/null
    PYTHON=python3.11
  else
    echo "bootstrap: Python 3.11 is required (apt-get install python3.11 python3.11-venv)" >&2
    exit 1
  fi
fi

# The compiled normalizer core needs a C compiler and Python's headers.
if ! command -v cc >/dev/null 2>&1 ||
   ! "$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq gcc python3.11-dev >/dev/null
  else
    echo "bootstrap: a C compiler and Python 3.11 headers are required (apt-get install gcc python3.11-dev)" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv || {
    echo "bootstrap: '$PYTHON -m venv' failed; install the venv module (apt-get install python3.11-venv)" >&2
    exit 1
  }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
touch .venv/.installed
