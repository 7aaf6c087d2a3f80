#!/usr/bin/env bash
# Install everything Azurine needs into .venv: its Python packages, llama.cpp (built to run on any
# x86-64 CPU with AVX2, with or without AMX), the models from the catalog, the Studio's bundle (Node.js 20
# and npm) and the Chromium its tests drive. Safe to run again: what is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip

# the CPU build of torch (sentence-transformers asks for torch; a bare `torch` would be the CUDA build). Where pip's
# find-links hold that build's wheel, uv installs it from there: pip unpacks its 700 MB anew on every run (18 s), uv
# links it from its cache once it has seen it (1 s)
.venv/bin/python -m pip install --quiet "uv>=0.9"
FIND_LINKS=${PIP_FIND_LINKS:-$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)}
TORCH_WHEEL=""
# shellcheck disable=SC2086
[ -z "$FIND_LINKS" ] || TORCH_WHEEL=$(find $FIND_LINKS -maxdepth 1 -name 'torch-2.13.0+cpu-*.whl' 2>/dev/null | head -n 1 || true)
if [ -n "$TORCH_WHEEL" ]; then
    .venv/bin/uv pip install --quiet --python .venv/bin/python "$TORCH_WHEEL"
else
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi

# Azurine Studio (`/studio`): built from studio/ into src/azurine/studio/dist (package data, so before the package
# is installed), unless the build is newer than every source file
STUDIO_BUILT=src/azurine/studio/dist/index.html
if [ ! -f "$STUDIO_BUILT" ] || [ -n "$(find studio -path studio/node_modules -prune -o -type f -newer "$STUDIO_BUILT" -print -quit)" ]; then
    (cd studio && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
fi

# llama.cpp's native build crashes on CPUs with AMX at the first decoded token; build it portably
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
# pip takes about 90 s here to resolve and install the project's 180 packages, even with all of them in its cache;
# uv takes seconds. uv builds llama-cpp-python from source on every run (five minutes), though, where pip keeps the
# wheel it built in its cache: so pip makes that wheel and uv installs it with the rest
LLAMA_REQUIREMENT=$(grep -o '"llama-cpp-python[^"]*"' pyproject.toml | tr -d '"')
.venv/bin/python -m pip wheel --quiet --no-deps --wheel-dir .venv/wheels "$LLAMA_REQUIREMENT"
.venv/bin/uv pip install --quiet --python .venv/bin/python --find-links .venv/wheels --compile-bytecode -e '.[test]'
# pip byte-compiles what it installs, but not an editable package's own source; where PYTHONDONTWRITEBYTECODE is set
# (as on CI's machines) nothing compiled at import is kept, so every process would compile Azurine anew
.venv/bin/python -m compileall -q src >/dev/null

.venv/bin/azurine models install

# from Debian's packages: the browser the Studio's tests drive (tests/test_studio.py; never a downloaded one), and
# espeak-ng, the speech deployment's voice for languages other than English (docs/speech.md)
MISSING=""
[ -x /usr/bin/chromium ] || MISSING="$MISSING chromium"
command -v espeak-ng >/dev/null 2>&1 || MISSING="$MISSING espeak-ng"
if [ -n "$MISSING" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi
