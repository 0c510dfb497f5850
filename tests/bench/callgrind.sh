#!/usr/bin/env bash
# callgrind.sh — pgstash's instructions per cache hit and per cache miss, counted by
# valgrind --tool=callgrind (workers: 1, one pgbench client, N vs 2N statements so the
# per-connection cost cancels). A thin wrapper around callgrind.py; see `callgrind.sh --help`.
#
#   tests/bench/callgrind.sh                 # N = 1000, simple, extended and prepared
#   tests/bench/callgrind.sh --n 300 --modes extended
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec /usr/bin/python3 "$here/callgrind.py" "$@"
