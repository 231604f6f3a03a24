#!/usr/bin/env bash
# Runs inside `unshare --net`: loopback up with a multicast route, PostgreSQL and Kafka
# started on 127.0.0.1, the test suite run with TP_REQUIRE_SERVICES=1, services stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

ip link set lo up
ip route add 224.0.0.0/4 dev lo

run_dir=$(mktemp -d /tmp/tickerplant-test.XXXXXX)
chmod 755 "$run_dir"
cleanup() {
  deploy/kafka/kafka.sh stop "$run_dir/kafka" || true
  deploy/postgres/pg.sh stop "$run_dir/pg" || true
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== services: starting PostgreSQL and Kafka (KRaft) on 127.0.0.1"
start=$(date +%s)
mkdir -p "$run_dir/pg" "$run_dir/kafka"
deploy/postgres/pg.sh start "$run_dir/pg" >/dev/null &
pg_pid=$!
PYTHON=$PWD/.venv/bin/python deploy/kafka/kafka.sh start "$run_dir/kafka" >/dev/null &
kafka_pid=$!
wait "$pg_pid"
wait "$kafka_pid"
set -a
# shellcheck disable=SC1091
. "$run_dir/pg/env"
# shellcheck disable=SC1091
. "$run_dir/kafka/env"
set +a
echo "   PostgreSQL $TP_TEST_DATABASE_URL, Kafka $TP_TEST_KAFKA_BOOTSTRAP ($(($(date +%s) - start)) s)"

echo "== tests"
export TP_REQUIRE_SERVICES=1
.venv/bin/python -m pytest -p no:cacheprovider "$@"
