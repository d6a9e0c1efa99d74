#!/usr/bin/env bash
# Builds the producer compatibility corpus from the real SDKs (tests/producers/): a venv with
# the pinned producers (cached under ~/.cache, rebuilt when requirements.txt changes), then
# generate.py playing every scenario against the scripted model server on 127.0.0.1.
#
#   scripts/producers-corpus.sh OUT_DIR
#
# Afterwards: AUTOHARNESS_PRODUCERS_CORPUS=OUT_DIR cargo test --test main producers::
set -euo pipefail

OUT="${1:?usage: scripts/producers-corpus.sh OUT_DIR}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REQ="$ROOT/tests/producers/requirements.txt"
VENV="${AUTOHARNESS_PRODUCERS_VENV:-$HOME/.cache/autoharness/producers-venv}"
MARKER="$VENV/.autoharness-ready"

die() {
    echo "producers-corpus.sh: $*" >&2
    exit 1
}

PY="$(command -v python3 || true)"
[[ -n "$PY" ]] || die "no python3 on PATH; install Python 3.10+ (e.g. apt-get install python3 python3-venv)"

# The marker holds the requirements' hash, so a changed pin rebuilds instead of reusing.
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ ! -f "$MARKER" || "$(cat "$MARKER")" != "$WANT" ]]; then
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV" || die "could not create a venv at $VENV; install python3-venv or set AUTOHARNESS_PRODUCERS_VENV"
    echo "producers-corpus.sh: installing the pinned producers into $VENV (first time: a minute or two)" >&2
    "$VENV/bin/pip" install -q --upgrade pip >&2
    "$VENV/bin/pip" install -q -r "$REQ" >&2 || die "pip could not install $REQ"
    echo "$WANT" >"$MARKER"
fi

rm -rf "$OUT"
"$VENV/bin/python" "$ROOT/tests/producers/generate.py" "$OUT"
# Scores and feedback on three of those traces, as the SDKs send them (tests/feedback.rs).
"$VENV/bin/python" "$ROOT/tests/producers/feedback.py" --corpus "$OUT" 2>"$OUT/logs/feedback.log" \
    || die "feedback.py failed; see $OUT/logs/feedback.log"
