#!/usr/bin/env bash
# Stops the PostgreSQL cluster shared by the test suite, if it is running.
#
# The tests start it on first use in $OFFSITE_TEST_PG_DIR (default /tmp/offsite-test-pg; the data
# directory is its `postgres` subdirectory) and leave it running between test binaries; `make test`
# calls this at the end, whatever the tests' outcome. Always exits 0 unless pg_ctl itself fails
# on a running cluster.
set -euo pipefail

dir=${OFFSITE_TEST_PG_DIR:-/tmp/offsite-test-pg}
data=$dir/postgres

if [[ ! -f $data/postmaster.pid ]]; then
    exit 0
fi

bin=""
best=0
for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/pg_ctl ]] || continue
    v=${d#/usr/lib/postgresql/}
    v=${v%/bin}
    if [[ -z $bin || ${v%%.*} -gt ${best%%.*} ]]; then
        bin=$d
        best=$v
    fi
done
if [[ -z $bin ]] && command -v pg_config >/dev/null 2>&1; then
    bin=$(pg_config --bindir)
fi
if [[ -z $bin || ! -x $bin/pg_ctl ]]; then
    echo "stop-test-db: pg_ctl not found; cannot stop the test cluster in $data" >&2
    exit 0
fi

# The cluster was created by the `postgres` user when the tests ran as root.
if [[ $(id -u) -eq 0 ]]; then
    run=(runuser -u postgres --)
else
    run=()
fi

if ! "${run[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    exit 0 # a stale pid file: nothing is running
fi
"${run[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
echo "stop-test-db: stopped the test PostgreSQL cluster in $data"
