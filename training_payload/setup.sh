#!/usr/bin/env bash
# The demo job's setup_command: install the payload's packages for the instance's python3.
# Chainer 7.8.1 is an sdist whose setup.py needs pkg_resources, gone from setuptools 81.
set -euo pipefail
if [ "${SPOTTRAIN_GPU:-0}" = "-1" ] && python3 -c "import chainer" 2>/dev/null; then
  echo "CPU run with chainer already installed: nothing to set up"
  exit 0
fi
here="$(cd "$(dirname "$0")" && pwd)"
constraints="$(mktemp)"
echo "setuptools<81" >"$constraints"
PIP_BUILD_CONSTRAINT="$constraints" PIP_CONSTRAINT="$constraints" \
  python3 -m pip install --user --quiet --progress-bar off -r "$here/requirements.txt"
