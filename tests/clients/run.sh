#!/usr/bin/env bash
# tests/clients/run.sh — the real-drivers suite: psycopg2, psycopg 3, node-postgres, pgjdbc and
# psql, each running the same scripted session against PostgreSQL and through pgstash.
#
#   tests/clients/run.sh                      everything (what `make test` runs as stage clients)
#   tests/clients/run.sh -k jdbc -x           extra arguments go to pytest
#   PYTEST_ARGS="-k psql" tests/clients/run.sh
#   PGSTASH_BIN=/path/to/pgstash tests/clients/run.sh
#
# Installs what is missing first: the Debian packages (scripts/install-deps.sh clients), then,
# from the tests, pg from npm (npm ci into tests/clients/node/node_modules) and the Java program
# (javac into tests/clients/java/build); both are skipped when already up to date.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/install-deps.sh clients
if [ -z "${PGSTASH_BIN:-}" ] && [ ! -x ./pgstash ]; then
    make --no-print-directory
fi
export PGSTASH_CLIENTS_NO_INSTALL=1   # done just above

eval "set -- ${PYTEST_ARGS:-} \"\$@\""   # shell words, so -k 'a or b' works
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider -rfEs tests/clients "$@"
