#!/bin/bash
# Output volume of `ipcwatch agent` and `ipcwatch record` next to pgbench
# (docs/deploy.md). Root; PostgreSQL from Debian (cargo xtask setup).
# Whole-system; FILTER="--comm postgres --comm pgbench" narrows both.
# Usage: deploy/measure-pgbench.sh IPCWATCH SECS_AGENT SECS_RECORD
set -eu
B=$1; TA=$2; TR=$3
PG=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
D=/tmp/ipcwatch-deploy-pg; rm -rf $D; mkdir -p $D; chown postgres:postgres $D
pg() { runuser -u postgres -- env PGHOST=$D PGPORT=5499 PGUSER=postgres PGDATABASE=postgres "$PG/$@"; }
pg initdb -D $D/data -U postgres -A trust -E UTF8 --locale=C --no-sync --no-instructions >/dev/null
printf "listen_addresses = ''\nunix_socket_directories = '$D'\nport = 5499\nsynchronous_commit = off\nshared_buffers = '128MB'\n" >> $D/data/postgresql.conf
pg pg_ctl -D $D/data -l $D/server.log -w start >/dev/null
trap 'pg pg_ctl -D $D/data -m fast -w stop >/dev/null' EXIT
pg pgbench -i -q -s 5 2>/dev/null
size() { cat "$@" 2>/dev/null | wc -c; }
measure() { # NAME SECS ARGS...
  local name=$1 secs=$2; shift 2
  "$B" "$@" -o $D/$name.ndjson 2>$D/$name.err & local pid=$!
  while [ ! -s $D/$name.ndjson ]; do sleep 0.2; done; sleep 1
  local s0=$(size $D/$name.ndjson*) t0=$(date +%s.%N)
  local tps=$(pg pgbench -c 4 -j 2 -T $secs 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  local s1=$(size $D/$name.ndjson*) t1=$(date +%s.%N)
  kill -TERM $pid; wait $pid || true
  local total=$(size $D/$name.ndjson*)
  python3 -c "
s0,s1,t0,t1,total=$s0,$s1,$t0,$t1,$total
rate=(s1-s0)/(t1-t0)
print(f'$name: {t1-t0:.1f} s of pgbench (tps $tps): {s1-s0} bytes while it ran, {rate:.0f} B/s = {rate*86400/1e9:.3f} GB/day; start-up scan {s0} bytes; whole trace {total} bytes')"
  tail -1 $D/$name.err
  [ -x "$(command -v jq)" ] && jq -r .type $D/$name.ndjson* | sort | uniq -c | sort -rn | head -8
}
measure agent $TA agent ${FILTER:-}
measure record $TR record ${FILTER:-}
