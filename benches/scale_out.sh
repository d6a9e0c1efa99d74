#!/usr/bin/env bash
# Scale-out benchmark (#20; a benchmark, not a timed test): wall time of one gate on 1, 2, 4
# and 8 shards run as separate processes on this machine, each with its own store and trial
# folder, then the merge; against one machine running the whole gate.
#
# The harness is tests/fixtures/harnesses/seeded with every trial first waiting SLEEP seconds,
# as a model call does (I/O-bound: the CPU is idle while it waits). Each process runs JOBS
# trials at a time, as one CI runner would.
#
#   benches/scale_out.sh [BIN]        # BIN defaults to target/release/autoharness
#   SLEEP=0.5 JOBS=2 SHARDS="1 2 4 8" benches/scale_out.sh
#   SHARED=1 benches/scale_out.sh     # every shard on ONE SQLite store (concurrent writers), merged from it
#   PG=postgres://u@host:port/db benches/scale_out.sh   # every shard on ONE Postgres store (a fresh
#                                     # schema per configuration; needs psql), merged from it
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$here/target/release/autoharness}")
sleep_s=${SLEEP:-0.5}
jobs=${JOBS:-2}
shards=${SHARDS:-"1 2 4 8"}
shared=${SHARED:-0}
pg=${PG:-}
[ -n "$pg" ] && shared=1
# The store of one configuration: a shard's own file, the shared file, or a fresh Postgres schema.
pg_store() { # name
    local schema="bench_$1_$$"
    PGOPTIONS=--client-min-messages=warning psql -q "$pg" -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
    case "$pg" in *\?*) echo "$pg&options[search_path]=$schema" ;; *) echo "$pg?options[search_path]=$schema" ;; esac
}
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first, or pass one" >&2; exit 2; }

work=$(mktemp -d -t autoharness-scale-XXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$here/tests/fixtures/harnesses/seeded/." "$work/base"
# Every trial waits first, like a model call.
sed -i "1i sleep $sleep_s" "$work/base/harnesses/seeded/run.sh"
sed -i 's/timeout = "5s"/timeout = "60s"/' "$work/base/harnesses/seeded/harness.toml"
rates=harnesses/seeded/rates.txt
sed 's/^c-r12 60/c-r12 40/' "$work/base/$rates" > "$work/new-rates"
(cd "$work/base" && diff -u --label "a/$rates" --label "b/$rates" "$rates" ../new-rates > ../change.patch || true)

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }

run_in() { # dir args... (a fresh copy of the project per configuration: no cache carried over)
    local dir=$1; shift
    (cd "$dir" && AUTOHARNESS_JOBS=$jobs CI=1 NO_COLOR=1 "$bin" "$@")
}

if [ -n "$pg" ]; then echo "stores: one shared Postgres store"; else
echo "stores: $([ "$shared" = 1 ] && echo 'one shared SQLite file' || echo 'one SQLite file per shard')"; fi
echo "trial wait ${sleep_s}s, $jobs trials at a time per process; gate of change.patch (c-r12 60% -> 40%)"
printf '%-8s %10s %10s %10s %9s %14s %11s %s\n' shards shards_s merge_s total_s speedup merge_trials all_trials verdict
d="$work/one"; cp -r "$work/base" "$d"; cp "$work/change.patch" "$d/"
one_db=one.db; [ -n "$pg" ] && one_db=$(pg_store one)
t0=$(now)
run_in "$d" --db "$one_db" --json gate change.patch > "$d/one.json" || true
t1=$(now)
single=$(secs "$t0" "$t1")
one_trials=$(field "$d/one.json" "d['trials']['baseline']+d['trials']['candidate']")
printf '%-8s %10s %10s %10s %9s %14s %11s %s\n' "1 (no partition)" - - "$single" 1.00 "$one_trials" "$one_trials" \
    "$(field "$d/one.json" "d['verdict']")"
for n in $shards; do
    d="$work/s$n"; cp -r "$work/base" "$d"; cp "$work/change.patch" "$d/"
    team=team.db; [ -n "$pg" ] && team=$(pg_store "s$n")
    t0=$(now)
    pids=()
    for k in $(seq 1 "$n"); do
        db="shard-$k.db"; [ "$shared" = 1 ] && db=$team
        run_in "$d" --db "$db" --json gate change.patch --partition "$k/$n" > "$d/shard-$k.json" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$(now)
    stores=(); for k in $(seq 1 "$n"); do stores+=("shard-$k.db"); done
    if [ "$shared" = 1 ]; then
        run_in "$d" --db "$team" --json gate change.patch --merge > "$d/merge.json" || true
    else
        run_in "$d" --db merge.db --json gate change.patch --merge "${stores[@]}" > "$d/merge.json" || true
    fi
    t2=$(now)
    ran=$(field "$d/merge.json" "d['trials']['baseline']+d['trials']['candidate']-d['trials']['cached']")
    all=$ran
    for k in $(seq 1 "$n"); do
        all=$((all + $(field "$d/shard-$k.json" "d['trials']['baseline']+d['trials']['candidate']-d['trials']['cached']")))
    done
    printf '%-8s %10s %10s %10s %9s %14s %11s %s\n' "$n" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(secs "$t0" "$t2")" \
        "$(awk -v a="$single" -v b="$(secs "$t0" "$t2")" 'BEGIN { printf "%.2f", a / b }')" "$ran" "$all" \
        "$(field "$d/merge.json" "d['verdict']")"
done
[ "$shared" = 1 ] && exit 0
# The merge's own cost (checks, reading the shards' trials, the decision) without trials: the
# same merge again, every trial now in its store's cache.
d="$work/s$(echo "$shards" | awk '{ print $NF }')"
stores=(); for f in "$d"/shard-*.db; do stores+=("$(basename "$f")"); done
t0=$(now)
run_in "$d" --db merge.db --json gate change.patch --merge "${stores[@]}" > /dev/null || true
t1=$(now)
echo "merge of ${#stores[@]} shard stores with every trial cached: $(secs "$t0" "$t1")s"
