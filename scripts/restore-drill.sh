#!/usr/bin/env bash
# Backup and restore drill (docs/operations.md, "Backup and restore"): proves that a logical dump
# of the database plus the data directory's pki/, secrets/ and audit/ bring an installation back
# whole on fresh storage.
#
#   1. A throwaway PostgreSQL server stands in for the production one; installation A runs
#      `offsite up` against it, registers a device, and the device's edge agent sends data over
#      MQTT/TLS for a while.
#   2. Backup: `pg_dump -Fc` of the database, and a tar of pki/ secrets/ audit/ files/.
#   3. Restore into a new database and an empty data directory B.
#   4. Checks: row counts equal (samples, devices, audit events), `offsite audit verify` passes
#      against the restored anchors, and the same device (its certificate and token from before
#      the backup) connects to B and its new data is stored, with no duplicates.
#
# Prints one JSON line last (sizes and times). Exit status 0 only if every check passed.
#
#   bash scripts/restore-drill.sh               # uses target/release/offsite, else target/debug/offsite
#   OFFSITE_BIN=path/to/offsite bash scripts/restore-drill.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

bin=${OFFSITE_BIN:-}
if [[ -z $bin ]]; then
    for b in "${CARGO_TARGET_DIR:-target}/release/offsite" "${CARGO_TARGET_DIR:-target}/debug/offsite"; do
        if [[ -x $b ]]; then bin=$b; break; fi
    done
fi
[[ -n $bin && -x $bin ]] || { echo "restore-drill: no offsite binary (cargo build -p offsite-cli, or set OFFSITE_BIN)" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

pgbin=""
for d in /usr/lib/postgresql/*/bin; do [[ -x $d/pg_ctl ]] && pgbin=$d; done
if [[ -z $pgbin ]] && command -v pg_config >/dev/null 2>&1; then pgbin=$(pg_config --bindir); fi
[[ -n $pgbin ]] || { echo "restore-drill: PostgreSQL server binaries not found (bash scripts/setup.sh)" >&2; exit 2; }

say() { printf 'restore-drill: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

work=$(mktemp -d /tmp/offsite-restore-drill.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    as_pg "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: as root, its tools run as the postgres user.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# --- 1. A database server and installation A with data ------------------------------------------
pgport=$(free_port)
mkdir -p "$work/pg"
[[ $(id -u) -eq 0 ]] && chown postgres "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --no-sync >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
    -o "-p $pgport -k $work/pg -c listen_addresses=''" start >/dev/null
psql_db() { "$pgbin/psql" -h "$work/pg" -p "$pgport" -U postgres -d "$1" -v ON_ERROR_STOP=1 -At -c "$2"; }
psql_db postgres "CREATE DATABASE offsite_a" >/dev/null
url() { echo "postgres://postgres@localhost:$pgport/$1?host=$work/pg"; }

tls_port=$(free_port)
http_port=$(free_port)
# What every `offsite` process of the drill shares: loopback listeners, no HJ 212, a known first
# administrator password (the drill never logs in; a first start needs one).
export OFFSITE_BROKER__TLS_LISTEN=127.0.0.1:$tls_port OFFSITE_BROKER__PLAIN_LISTEN=off \
    OFFSITE_PORTAL__LISTEN=127.0.0.1:$http_port OFFSITE_PORTAL__HTTPS_LISTEN=off \
    OFFSITE_HJ212__ENABLED=false OFFSITE_AUTH__INITIAL_ADMIN_PASSWORD='Drill#Restore-2026' \
    RUST_LOG=warn
unset OFFSITE_CONFIG

start_up() { # data-dir database
    "$bin" --data-dir "$1" --database-url "$(url "$2")" up >"$work/up-$2.log" 2>&1 &
    up_pid=$!
    pids+=("$up_pid")
    for _ in $(seq 1 600); do
        if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then return 0; fi
        kill -0 "$up_pid" 2>/dev/null || { cat "$work/up-$2.log" >&2; return 1; }
        sleep 0.1
    done
    say "offsite up did not become ready"; return 1
}
stop_pid() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

run_agent() { # seconds
    cat >"$work/agent.toml" <<EOF
data_dir = "$work/agent"
metrics_listen = "127.0.0.1:0"
batch_interval_ms = 200
[broker]
host = "localhost"
port = $tls_port
reconnect_jitter_ms = 0
[[devices]]
credentials = "$work/device.json"
  [[devices.sources]]
  name = "dust"
  kind = "sim"
  interval_ms = 100
  profile = "construction_site"
  seed = 7
EOF
    "$bin" edge-agent --config "$work/agent.toml" >"$work/agent.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    sleep "$1"
    stop_pid "$pid"
}

counts() { # database -> "samples devices audit_events"
    psql_db "$1" "SELECT (SELECT count(*) FROM samples) || ' ' || (SELECT count(*) FROM devices) || ' ' || (SELECT count(*) FROM audit_events)"
}

say "installation A: offsite up against a fresh database"
start_up "$work/a" offsite_a
"$bin" --data-dir "$work/a" --database-url "$(url offsite_a)" device add "恢复演练设备" --out "$work/device.json" >/dev/null
say "device sending for 8 s"
run_agent 8
stop_pid "$up_pid"
read -r samples_a devices_a audit_a <<<"$(counts offsite_a)"
[[ $samples_a -gt 0 ]] || { say "FAIL: installation A stored no samples"; cat "$work/agent.log" >&2; exit 1; }
say "A holds $samples_a samples, $devices_a devices, $audit_a audit events"

# --- 2. Backup -----------------------------------------------------------------------------------
mkdir -p "$work/backup"
t=$(now_ms)
"$pgbin/pg_dump" -Fc -f "$work/backup/offsite.dump" "$(url offsite_a)"
dump_ms=$(( $(now_ms) - t ))
tar -C "$work/a" -czf "$work/backup/data-dir.tgz" pki secrets audit $(cd "$work/a" && ls -d files 2>/dev/null)
dump_bytes=$(stat -c %s "$work/backup/offsite.dump")
files_bytes=$(stat -c %s "$work/backup/data-dir.tgz")

# --- 3. Restore onto fresh storage -----------------------------------------------------------------
psql_db postgres "CREATE DATABASE offsite_b" >/dev/null
t=$(now_ms)
"$pgbin/pg_restore" --no-owner --exit-on-error -d "$(url offsite_b)" "$work/backup/offsite.dump"
restore_ms=$(( $(now_ms) - t ))
mkdir -p "$work/b"
tar -C "$work/b" -xzf "$work/backup/data-dir.tgz"

# --- 4. Checks -------------------------------------------------------------------------------------
read -r samples_b devices_b audit_b <<<"$(counts offsite_b)"
fail=0
if [[ "$samples_a $devices_a $audit_a" != "$samples_b $devices_b $audit_b" ]]; then
    say "FAIL: restored counts differ: A $samples_a/$devices_a/$audit_a, B $samples_b/$devices_b/$audit_b"; fail=1
fi
if ! "$bin" --data-dir "$work/b" --database-url "$(url offsite_b)" audit verify >"$work/verify.log" 2>&1; then
    say "FAIL: offsite audit verify on the restored installation:"; cat "$work/verify.log" >&2; fail=1
fi
say "installation B: offsite up on the restored database and data directory"
start_up "$work/b" offsite_b
say "the same device sending to B for 5 s"
run_agent 5
stop_pid "$up_pid"
read -r samples_after _ _ <<<"$(counts offsite_b)"
distinct=$(psql_db offsite_b "SELECT count(*) FROM (SELECT DISTINCT device_key, metric_id, ts FROM samples) s")
if [[ $samples_after -le $samples_b ]]; then
    say "FAIL: the device's data after the restore was not stored ($samples_b -> $samples_after)"; cat "$work/agent.log" >&2; fail=1
fi
if [[ $distinct -ne $samples_after ]]; then
    say "FAIL: duplicates after the restore ($samples_after rows, $distinct distinct)"; fail=1
fi
if ! "$bin" --data-dir "$work/b" --database-url "$(url offsite_b)" audit verify >"$work/verify2.log" 2>&1; then
    say "FAIL: audit verify after B ran:"; cat "$work/verify2.log" >&2; fail=1
fi

ok=$([[ $fail -eq 0 ]] && echo true || echo false)
printf '{"drill":"restore","ok":%s,"samples":%s,"devices":%s,"audit_events":%s,"dump_bytes":%s,"data_dir_tgz_bytes":%s,"dump_ms":%s,"restore_ms":%s,"samples_after_restore":%s}\n' \
    "$ok" "$samples_a" "$devices_a" "$audit_a" "$dump_bytes" "$files_bytes" "$dump_ms" "$restore_ms" "$samples_after"
exit $fail
