#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis servers the tests use are up; starts them if not.
set -uo pipefail
PGHOST_="${TEST_PGHOST:-127.0.0.1}"; PGPORT_="${TEST_PGPORT:-5432}"
REDIS_PORT_="${TEST_REDIS_PORT:-6379}"

pg_up() { pg_isready -q -h "$PGHOST_" -p "$PGPORT_" 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT_" ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  echo "services: PostgreSQL not answering on $PGHOST_:$PGPORT_; starting it" >&2
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! pg_up; then
  echo "services: the tests need PostgreSQL (>=14) on $PGHOST_:$PGPORT_ with trust auth and a" >&2
  echo "          database 'test' (set TEST_DATABASE_URL to use another); none could be started." >&2
  exit 1
fi

if ! redis_up; then
  echo "services: Redis not answering on 127.0.0.1:$REDIS_PORT_; starting it" >&2
  if command -v redis-server >/dev/null; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT_" --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
fi
if ! redis_up; then
  echo "services: the tests need Redis on 127.0.0.1:$REDIS_PORT_; none could be started." >&2
  exit 1
fi
echo "services: PostgreSQL and Redis are up" >&2
