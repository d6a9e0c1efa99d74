#!/usr/bin/env bash
# Partitioned `run` benchmark (#20; a benchmark, not a timed test): wall time of one nightly
# `run` iteration on the bundled example, on one machine and on N runners (`run --partition
# K/N`, each runner its own process and checkout, one shared store), with every trial first
# waiting SLEEP seconds as a model call does. Prints the speed-up against the one-machine run
# measured in the same invocation, and checks that every configuration decided the same.
#
#   benches/run_partition.sh [BIN]     # BIN defaults to target/release/autoharness
#   SLEEP=0.5 JOBS=2 RUNNERS="2 4" benches/run_partition.sh
#   PG=postgres://u@host:port/db benches/run_partition.sh   # the store on Postgres (a fresh
#                                      # schema per configuration; needs psql), else one SQLite file
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$here/target/release/autoharness}")
sleep_s=${SLEEP:-0.5}
jobs=${JOBS:-2}
runners=${RUNNERS:-"2 4"}
pg=${PG:-}
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first, or pass one" >&2; exit 2; }
work=$(mktemp -d -t autoharness-runpart-XXXX)
trap 'rm -rf "$work"' EXIT
store() { # name
    if [ -z "$pg" ]; then echo "$work/$1.db"; return; fi
    local schema="bench_run_$1_$$"
    PGOPTIONS=--client-min-messages=warning psql -q "$pg" -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
    case "$pg" in *\?*) echo "$pg&options[search_path]=$schema" ;; *) echo "$pg?options[search_path]=$schema" ;; esac
}
checkout() { # dir
    mkdir -p "$1"
    cp -r "$here/harnesses" "$here/evals" "$1/"
    mkdir -p "$1/examples/support-bot" && cp -r "$here/examples/support-bot/traces" "$1/examples/support-bot/"
    sed -i "s/^run = \"python3 agent.py\"/run = \"sleep $sleep_s; python3 agent.py\"/" "$1/harnesses/support-bot/harness.toml"
}
args=(run --traces examples/support-bot/traces --max-iterations 1 --candidates 2 --json)
decisions() { python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(json.dumps([[c["description"], c["verdict"], c["reason"]] for it in d["iterations"] for c in it["candidates"]]))' "$1"; }
now() { date +%s.%N; }

checkout "$work/one"
db=$(store one)
t0=$(now)
(cd "$work/one" && AUTOHARNESS_JOBS=$jobs "$bin" --db "$db" "${args[@]}" > "$work/one.json")
one=$(echo "$(now) - $t0" | bc)
ref=$(decisions "$work/one.json")
trials=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["trials"])' "$work/one.json")
printf 'trials wait %ss; %s jobs per runner; %s trials in the run; store: %s\n' "$sleep_s" "$jobs" "$trials" "${pg:+postgres}${pg:-sqlite file}"
printf '%-10s %10s %9s %s\n' runners wall_s speed-up "same decisions"
printf '%-10s %10.1f %9.2f %s\n' 1 "$one" 1.00 yes
for n in $runners; do
    db=$(store "n$n")
    pids=()
    for k in $(seq 2 "$n"); do
        checkout "$work/n$n-$k"
        (cd "$work/n$n-$k" && AUTOHARNESS_JOBS=$jobs "$bin" --db "$db" run --partition "$k/$n" --json > "$work/n$n-$k.json" 2> "$work/n$n-$k.err") &
        pids+=($!)
    done
    checkout "$work/n$n-1"
    t0=$(now)
    (cd "$work/n$n-1" && AUTOHARNESS_JOBS=$jobs "$bin" --db "$db" "${args[@]}" --partition "1/$n" > "$work/n$n.json")
    wall=$(echo "$(now) - $t0" | bc)
    for p in "${pids[@]}"; do wait "$p"; done
    same=no; [ "$(decisions "$work/n$n.json")" = "$ref" ] && same=yes
    printf '%-10s %10.1f %9.2f %s\n' "$n" "$wall" "$(echo "$one / $wall" | bc -l)" "$same"
done
