#!/usr/bin/env bash
# Build llama.cpp's C++ `llama-server` (vendored in the llama-cpp-python sdist) for the served-backend tests.
# Why the C++ server and not llama-cpp-python's Python server: only llama-server accepts token-id prompts
# and has /tokenize, which the tests need to check token-exactness.
# Idempotent: exits at once when the binary already exists. Output: $EVALKIT_LLAMA_SERVER_DIR/bin/llama-server
# (default ~/.cache/evalkit-test/llama-server). Build is CPU-only and niced; EVALKIT_BUILD_JOBS jobs (default 1:
# a shared machine; .ci/run uses 2). Measured: 1,641 s wall with 1 job on 2 cores shared with other work
# (2026-12-01); a clean 2-core machine with 2 jobs is estimated at about 9 minutes (not measured).
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
ROOT="${EVALKIT_LLAMA_SERVER_DIR:-$HOME/.cache/evalkit-test/llama-server}"
JOBS="${EVALKIT_BUILD_JOBS:-1}"
BIN="$ROOT/bin/llama-server"
if [ -x "$BIN" ]; then echo "llama-server present: $BIN"; exit 0; fi
for tool in cmake g++; do
  command -v "$tool" >/dev/null || { echo "cannot build llama-server: $tool is not installed (apt-get install cmake g++)"; exit 1; }
done
STARTED=$(date +%s)
mkdir -p "$ROOT"
cd "$ROOT"
SDIST="llama_cpp_python-$VERSION.tar.gz"
[ -f "$SDIST" ] || pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .
SRC="$ROOT/llama_cpp_python-$VERSION/vendor/llama.cpp"
[ -d "$SRC" ] || tar xzf "$SDIST"
# No web UI (it would be fetched from the network), no curl/openssl, static so the binary stands alone.
# Not -march=native: on a machine whose CPU reports AMX but whose kernel/VM does not enable it, the native
# build dies with SIGILL on the first matrix product; AVX2/FMA (x86-64-v3) runs everywhere CI does.
nice -n 10 cmake -S "$SRC" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
nice -n 10 cmake --build "$ROOT/build" --target llama-server -j "$JOBS"
mkdir -p "$ROOT/bin"
cp "$ROOT/build/bin/llama-server" "$BIN"
echo "llama-server built: $BIN in $(( $(date +%s) - STARTED )) s with $JOBS jobs"
