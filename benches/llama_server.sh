#!/usr/bin/env bash
# llama.cpp's native llama-server: the continuous-batching peer for generation.
#
#   benches/llama_server.sh build                       build it once (idempotent), print its path
#   benches/llama_server.sh serve GGUF PORT [THREADS]   build if needed, then exec the server
#
# The source is llama.cpp as vendored in the llama-cpp-python sdist (PyPI, no
# model hub, no git). Built once into $RAGD_LLAMA_DIR (default
# ~/.cache/ragd/llama.cpp); about 7-10 minutes on 2 cores, at nice 19.
# cmake comes from PATH, else from a small venv next to the build (pip install cmake).
# Server knobs: LLAMA_NP (parallel slots, default 16), LLAMA_CTX_PER_SLOT
# (default 128+128+64 = 320 tokens: a 128-token prompt, 128 new tokens, slack).
set -euo pipefail
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
dir="${RAGD_LLAMA_DIR:-$HOME/.cache/ragd/llama.cpp}"
bin="$dir/build/bin/llama-server"

log() { echo "llama_server.sh: $*" >&2; }

find_cmake() {
    if command -v cmake >/dev/null 2>&1; then
        command -v cmake
        return
    fi
    if [ ! -x "$dir/venv/bin/cmake" ]; then
        log "cmake not found: installing it with pip into $dir/venv"
        python3 -m venv "$dir/venv"
        "$dir/venv/bin/pip" install --quiet cmake
    fi
    echo "$dir/venv/bin/cmake"
}

build() {
    if [ -x "$bin" ]; then
        echo "$bin"
        return
    fi
    mkdir -p "$dir/sdist"
    local sdist
    sdist="$(ls "$dir"/sdist/llama_cpp_python-"$version".tar.gz 2>/dev/null || true)"
    if [ -z "$sdist" ]; then
        log "downloading llama-cpp-python==$version (sdist)"
        python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$dir/sdist"
        sdist="$(ls "$dir"/sdist/llama_cpp_python-"$version".tar.gz)"
    fi
    local src="$dir/src"
    if [ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]; then
        rm -rf "$src" && mkdir -p "$src"
        tar -xzf "$sdist" -C "$src" --strip-components=1
    fi
    local cmake
    cmake="$(find_cmake)"
    local jobs="${LLAMA_BUILD_JOBS:-2}"
    log "configuring llama.cpp (log: $dir/build.log)"
    nice -n 19 "$cmake" -S "$src/vendor/llama.cpp" -B "$dir/build" \
        -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
        >"$dir/build.log" 2>&1 || { tail -30 "$dir/build.log" >&2; exit 1; }
    log "building llama-server with $jobs jobs (several minutes)"
    nice -n 19 "$cmake" --build "$dir/build" --target llama-server -j "$jobs" \
        >>"$dir/build.log" 2>&1 || { tail -30 "$dir/build.log" >&2; exit 1; }
    echo "$bin"
}

case "${1:-}" in
build)
    build
    ;;
serve)
    [ $# -ge 3 ] || { log "usage: $0 serve GGUF PORT [THREADS]"; exit 2; }
    gguf="$2" port="$3" threads="${4:-2}"
    build >/dev/null
    np="${LLAMA_NP:-16}"
    ctx=$((np * ${LLAMA_CTX_PER_SLOT:-320}))
    # -c is the whole KV cache, split evenly among the -np slots.
    exec "$bin" -m "$gguf" --host 127.0.0.1 --port "$port" -np "$np" -c "$ctx" \
        -t "$threads" -tb "$threads" --cont-batching --no-webui
    ;;
*)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
