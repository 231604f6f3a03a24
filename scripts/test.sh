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
# Debian's Chromium drives the market page's end-to-end test (headless, loopback only).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "   installing Chromium (apt-get install chromium)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test: Chromium is missing (apt-get install chromium); the browser test will fail" >&2
  fi
fi

if [ "$(id -u)" != 0 ]; then
  echo "test: the private network namespace needs root (CI runs as root); run: sudo make test" >&2
  exit 1
fi

export TP_HOST_NETNS
TP_HOST_NETNS=$(readlink /proc/self/ns/net)
exec unshare --net --fork -- scripts/in-netns.sh "$@"
