#!/usr/bin/env bash
# run.sh — `make bench`: pgstash side by side with PostgreSQL, PgBouncer and Pgpool-II's query
# cache. A thin wrapper around bench.py (Debian's python3, stdlib only); see `run.sh --help`.
#
#   tests/bench/run.sh --duration 5 --rounds 1 --only hot_agg:extended
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec /usr/bin/python3 "$here/bench.py" "$@"
