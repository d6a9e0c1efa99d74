#!/usr/bin/env bash
# Store backends side by side (#20; a benchmark, not a timed test): the same work on a SQLite
# file and on a Postgres store, in one run, reported as times and as the Postgres/SQLite ratio.
#   - a first mine of ../shared/datasets (--no-cases: store writes, not case files), then a
#     re-mine of the unchanged folder (store reads);
#   - a gate's trial writes: the seeded harness (tests/fixtures/harnesses/seeded, instant
#     trials, so the store is most of the work), cold, then warm (every trial a cache hit).
#
#   PG=postgres://u@127.0.0.1:5432/postgres benches/store_backends.sh [BIN]
#   (scripts/postgres.sh start writes such a URL as AUTOHARNESS_TEST_POSTGRES; needs psql)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-$here/target/release/autoharness}")
pg=${PG:-${AUTOHARNESS_TEST_POSTGRES:-}}
reps=${REPS:-3}
shared="${AUTOHARNESS_SHARED:-$here/../shared}"
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first, or pass one" >&2; exit 2; }
[ -n "$pg" ] || { echo "set PG to a Postgres URL (scripts/postgres.sh start)" >&2; exit 2; }
[ -d "$shared/datasets" ] || { echo "no $shared/datasets" >&2; exit 2; }

work=$(mktemp -d -t autoharness-stores-XXXX)
trap 'rm -rf "$work"' EXIT
fresh() { # kind -> a new, empty store
    if [ "$1" = sqlite ]; then echo "$work/s$(date +%s%N).db"; return; fi
    local schema="bench_store_$$_$(date +%s%N)"
    psql -q "$pg" -c "CREATE SCHEMA $schema" >/dev/null
    case "$pg" in *\?*) echo "$pg&options[search_path]=$schema" ;; *) echo "$pg?options[search_path]=$schema" ;; esac
}
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

cp -r "$here/tests/fixtures/harnesses/seeded/." "$work/project"
rates=harnesses/seeded/rates.txt
sed 's/^c-r12 60/c-r12 40/' "$work/project/$rates" > "$work/new-rates"
(cd "$work/project" && diff -u --label "a/$rates" --label "b/$rates" "$rates" ../new-rates > change.patch || true)

declare -A result
for kind in sqlite postgres; do
    first=(); again=(); cold=(); warm=()
    for _ in $(seq 1 "$reps"); do
        db=$(fresh "$kind")
        t0=$(now); CI=1 "$bin" --db "$db" -q mine --no-cases "$shared/datasets" >/dev/null; t1=$(now)
        CI=1 "$bin" --db "$db" -q mine --no-cases "$shared/datasets" >/dev/null; t2=$(now)
        first+=("$(ms "$t0" "$t1")"); again+=("$(ms "$t1" "$t2")")
        db=$(fresh "$kind")
        t0=$(now); (cd "$work/project" && CI=1 "$bin" --db "$db" -q gate change.patch >/dev/null || true); t1=$(now)
        (cd "$work/project" && CI=1 "$bin" --db "$db" -q gate change.patch >/dev/null || true); t2=$(now)
        cold+=("$(ms "$t0" "$t1")"); warm+=("$(ms "$t1" "$t2")")
    done
    result[$kind,mine]=$(printf '%s\n' "${first[@]}" | median)
    result[$kind,remine]=$(printf '%s\n' "${again[@]}" | median)
    result[$kind,gate]=$(printf '%s\n' "${cold[@]}" | median)
    result[$kind,cached]=$(printf '%s\n' "${warm[@]}" | median)
done
trials=$(cd "$work/project" && CI=1 "$bin" --db "$work/count.db" --json gate change.patch 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['trials']['baseline']+d['trials']['candidate'])" || echo "?")
echo "median of $reps runs each, ms; ratio = Postgres / SQLite (machine noise hits both alike)"
printf '%-44s %10s %10s %7s\n' work sqlite postgres ratio
for w in "mine:first mine of ../shared/datasets (--no-cases)" "remine:re-mine, nothing changed" \
    "gate:gate, cold ($trials trials written)" "cached:gate again (every trial from the cache)"; do
    key=${w%%:*}; label=${w#*:}
    a=${result[sqlite,$key]}; b=${result[postgres,$key]}
    printf '%-44s %10s %10s %7s\n' "$label" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')"
done
