#!/usr/bin/env bash
# The compare with both sides on PostgreSQL, against a `SELECT count(*)` scan of both tables and
# against the same pair on SQLite. Run it under scripts/with-postgres (it needs $ENVSYNC_TEST_PG):
#
#   scripts/with-postgres bench/pg_compare.sh [RECORDS] [RUNS]
#
# It writes the demo with RECORDS extra CMS pages per side (default 1000000), edits 1% of TEST's
# pages, loads both databases into PostgreSQL (COPY), records the base with a first compare on
# each engine, then times RUNS (default 3) everyday compares of each as a user runs them (the
# summary printed; the JSON of every change only once at the end, for the counts), alternating
# with the count(*) scan, with the peak resident memory of each compare and the bytes it read
# from the servers. `postgres` uses the servers' row digests (the remote-efficient compare);
# `postgres-full` is the same pair read whole (ENVSYNC_REMOTE_DIGESTS=0); `postgres-tracked`
# reads both databases' change logs (envsync track) and only what they and the last compare
# name. Then it times the triggers' cost on TEST's writes, tracking off against on.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-1000000}
RUNS=${2:-3}
ENVSYNC=${ENVSYNC:-build/release/src/cli/envsync}
: "${ENVSYNC_TEST_PG:?run under scripts/with-postgres}"
DIR=$(mktemp -d /tmp/envsync-pgbench.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
SERVER=${ENVSYNC_TEST_PG%/*}

"$ENVSYNC" demo init "$DIR/demo" --records "$RECORDS" >/dev/null
EDITS=$((RECORDS / 100))
sqlite3 "$DIR/demo/test.db" "UPDATE cms_pages SET title = title || ' (autumn)' WHERE id > 1000 AND id <= 1000 + $EDITS"

load() {  # load SQLITE_FILE DATABASE
  psql -q "$ENVSYNC_TEST_PG" -c "DROP DATABASE IF EXISTS $2" -c "CREATE DATABASE $2"
  psql -q "$SERVER/$2" -f data/schema.postgres.sql
  for table in $(sqlite3 "$1" "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"); do
    sqlite3 -header -csv "$1" "SELECT * FROM \"$table\"" |
      psql -q "$SERVER/$2" -c "SET session_replication_role = replica" \
        -c "\\copy \"$table\" FROM STDIN WITH (FORMAT csv, HEADER true)"
  done
  psql -q "$SERVER/$2" -c "VACUUM ANALYZE"
}
load "$DIR/demo/prod.db" envsync_bench_prod
load "$DIR/demo/test.db" envsync_bench_test

config() {  # config NAME PROD TEST
  cp "$DIR/demo/state.db" "$DIR/$1-state.db"
  cat >"$DIR/$1.toml" <<EOT
home = "PROD"
state = "$DIR/$1-state.db"
[environments.PROD]
database = "$2"
assets = "$DIR/demo/prod-assets"
[environments.TEST]
database = "$3"
assets = "$DIR/demo/test-assets"
EOT
}
config sqlite "$DIR/demo/prod.db" "$DIR/demo/test.db"
config postgres "$SERVER/envsync_bench_prod" "$SERVER/envsync_bench_test"
config postgres-full "$SERVER/envsync_bench_prod" "$SERVER/envsync_bench_test"
config postgres-tracked "$SERVER/envsync_bench_prod" "$SERVER/envsync_bench_test"
# Change tracking (envsync track) on both databases; only `postgres-tracked` reads the logs.
"$ENVSYNC" --config "$DIR/postgres-tracked.toml" track enable PROD >/dev/null
"$ENVSYNC" --config "$DIR/postgres-tracked.toml" track enable TEST >/dev/null

seconds_since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$EPOCHREALTIME"; }

# One compare: wall seconds, peak RSS in MiB, and the bytes read from the database servers.
measure() {
  local start=$EPOCHREALTIME digests=1 tracking=0
  [ "$1" = postgres-full ] && digests=0
  [ "$1" = postgres-tracked ] && tracking=1
  ENVSYNC_TRACKING=$tracking ENVSYNC_REMOTE_DIGESTS=$digests /usr/bin/time -f "%M" -o "$DIR/rss" "$ENVSYNC" --config "$DIR/$1.toml" compare --from TEST --to PROD >"$DIR/out.txt" 2>"$DIR/err"
  local bytes
  bytes=$(sed -n 's/.*read \([0-9,]*\) bytes.*/\1/p' "$DIR/err" | tr -d ,)
  echo "$1 $(seconds_since "$start") s, peak $(( $(cat "$DIR/rss") / 1024 )) MiB${bytes:+, read $bytes bytes}"
}
# The floor: both tables scanned by the servers themselves, at once.
count_scan() {
  local start=$EPOCHREALTIME
  psql -qAt "$SERVER/envsync_bench_prod" -c "SELECT count(*) FROM cms_pages" >/dev/null &
  psql -qAt "$SERVER/envsync_bench_test" -c "SELECT count(*) FROM cms_pages" >/dev/null
  wait
  echo "count(*) of both $(seconds_since "$start") s"
}

echo "first compare (records the base):"
measure sqlite
measure postgres
measure postgres-full
measure postgres-tracked
echo "everyday compares, $RUNS runs each:"
for _ in $(seq "$RUNS"); do
  measure sqlite
  measure postgres
  measure postgres-full
  measure postgres-tracked
  count_scan
done
# The triggers' cost on the platform's writes: the same statement on TEST with tracking on and
# off, alternately, each rolled back so the pair stays as it is.
WRITES=$((RECORDS / 10 > 100000 ? 100000 : (RECORDS / 10 < 1000 ? 1000 : RECORDS / 10)))
write_seconds() {  # write_seconds SQL
  psql -qAt "$SERVER/envsync_bench_test" -c "BEGIN" -c "\\timing on" -c "$1" -c "ROLLBACK" |
    sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | head -1
}
echo "the platform's writes on TEST, $WRITES rows per statement (ms, tracking off / on):"
for _ in $(seq "$RUNS"); do
  for state in disable enable; do
    "$ENVSYNC" --config "$DIR/postgres-tracked.toml" track $state TEST >/dev/null
    echo "  $state: UPDATE $(write_seconds "UPDATE cms_pages SET title = title || '.' WHERE id > 1000 AND id <= 1000 + $WRITES")" \
      "INSERT $(write_seconds "INSERT INTO cms_pages (id, slug, title, body_html, status, updated_by, updated_at) SELECT id + 100000000, slug || '-copy', title, body_html, status, updated_by, updated_at FROM cms_pages WHERE id > 1000 AND id <= 1000 + $WRITES")" \
      "DELETE $(write_seconds "DELETE FROM cms_pages WHERE id > 1000 AND id <= 1000 + $WRITES AND id NOT IN (SELECT cms_page_id FROM menu_items WHERE cms_page_id IS NOT NULL)")"
  done
done
# Timed as a user runs it (the summary printed); the JSON of every change only for the counts.
ENVSYNC_TRACKING=1 "$ENVSYNC" --config "$DIR/postgres-tracked.toml" compare --from TEST --to PROD --json >"$DIR/out.json" 2>"$DIR/err" || {
  cat "$DIR/err"
  exit 1
}
python3 - "$DIR/out.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["counts"]
print("last comparison's counts:", c)
PY
