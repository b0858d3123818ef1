#!/usr/bin/env bash
# Install sherpa_latent and everything it needs on a fresh Debian machine, then run the
# main job on the 3C 273 spectrum that ships inside the installed sherpa package.
#
#   bash scripts/setup.sh            # CPU build of torch (the default)
#   TORCH_SPEC=torch bash scripts/setup.sh   # let pip choose torch (a CUDA build on Linux)
#
# Everything Python goes into .venv beside this file's folder; system packages are those
# Sherpa's source build needs (PyPI has no Sherpa wheel).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        bison flex libfftw3-dev pkg-config gcc g++ make python3-dev python3-venv >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
# torch first, so that the project's own 'torch>=...' requirement is already met and pip
# does not pull a multi-GB CUDA build on a CPU machine.
"${PIP[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
"${PIP[@]}" install -e '.[test]'

DATA=$(.venv/bin/python -c 'import pathlib, sherpa; print(pathlib.Path(sherpa.__file__).parent / "astro/datastack/tests/data")')
.venv/bin/sherpa-latent report "$DATA/3c273.pi"
