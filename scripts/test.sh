#!/usr/bin/env bash
# The whole test run: lint, then every test against real services, inside a private
# network namespace. `make test` calls this; so does .ci/run (through make).
#
# Steps that need the network (package installs, Kafka's jars from Maven Central) run
# first, outside the namespace; PostgreSQL, Kafka and pytest then run inside
# `unshare --net`, where only `lo` exists, so no test can send a packet off the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== lint: ruff check and ruff format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== services: installing what is missing"
deploy/postgres/pg.sh ensure
deploy/kafka/kafka.sh fetch

if [ "$(id -u)" != 0 ]; then
  echo "test: the private network namespace needs root (CI runs as root); run: sudo make test" >&2
  exit 1
fi

export TP_HOST_NETNS
TP_HOST_NETNS=$(readlink /proc/self/ns/net)
exec unshare --net --fork -- scripts/in-netns.sh "$@"
