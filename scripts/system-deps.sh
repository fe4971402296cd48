#!/bin/sh
# Install the system programs the demo and the tests start, with apt, when they are missing.
# As root it installs them; otherwise it prints the exact command to run and fails.
set -eu

need=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

# Debian's python3 ships venv without ensurepip until python3-venv is installed: try one.
probe=$(mktemp -d)
python3 -m venv "$probe/v" >/dev/null 2>&1 || need="$need python3-venv"
rm -rf "$probe"
have mosquitto || need="$need mosquitto"
have dbus-daemon || need="$need dbus-daemon"
have systemd-analyze || need="$need systemd"
have openssl || need="$need openssl"
have ip || need="$need iproute2"
# The clinic console's browser test (tests/cloud/test_console_browser.py): Playwright drives it.
have chromium || need="$need chromium"
# The fleet-ingest tests (tests/cloud) need a PostgreSQL server (initdb/pg_ctl for a private one).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"

# PostgreSQL running, with a role for the user who runs the tests (peer auth on the socket).
pg_ready() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    user=$(id -un)
    if [ "$(id -u)" -ne 0 ]; then
        psql -d postgres -tAc 'SELECT 1' >/dev/null 2>&1 && return 0
        echo "PostgreSQL is not running or has no role for $user; as root run:" >&2
        echo "  sudo sh scripts/system-deps.sh   (or: sudo -u postgres createuser --createdb $user)" >&2
        return 1
    fi
    pg_lsclusters -h | while read -r ver name _port status _rest; do
        [ "$status" = online ] || pg_ctlcluster "$ver" "$name" start
    done
    runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$user'" \
        | grep -q 1 || runuser -u postgres -- createuser --createdb "$user"
}

if [ -z "$need" ]; then
    pg_ready
    exit $?
fi
cmd="apt-get update && apt-get install -y --no-install-recommends$need"
if [ "$(id -u)" -ne 0 ]; then
    echo "edge-gateway needs these system packages:$need" >&2
    echo "run as root:  sudo sh -c '$cmd'" >&2
    exit 1
fi
echo "installing system packages:$need" >&2
export DEBIAN_FRONTEND=noninteractive
sh -c "$cmd"
# Debian starts mosquitto as a service on install; our tests start their own brokers on free
# ports and never use it.
pg_ready
