#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl) exist for the throwaway test cluster.
# With TEST_DATABASE_URL set, the tests use that server instead and nothing is needed here.
set -euo pipefail
[ -n "${TEST_DATABASE_URL:-}" ] && exit 0
find_initdb() {
  command -v initdb 2>/dev/null && return 0
  ls -1d /usr/lib/postgresql/*/bin/initdb /usr/local/pgsql/bin/initdb 2>/dev/null | sort -V | tail -n 1
}
if [ -n "$(find_initdb)" ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found: installing Debian's postgresql package" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  [ -n "$(find_initdb)" ] && exit 0
fi
echo "error: the tests need PostgreSQL server binaries (initdb, pg_ctl) and none were found." >&2
echo "       Install PostgreSQL (e.g. 'apt-get install postgresql' as root) or set" >&2
echo "       TEST_DATABASE_URL=postgresql://user@host:port/db to use an existing server." >&2
exit 1
