#!/usr/bin/env bash
# Make sure the PostgreSQL server programs (initdb, pg_ctl) are installed, from Debian's `postgresql` package.
# The test suite starts its own private cluster with them (tests/postgres_cluster.py); nothing else is started
# or configured here. Prints the folder of the server programs. Run as root to install (CI runs as root).
set -euo pipefail

bindir() {
    # The newest installed major version, e.g. /usr/lib/postgresql/15/bin.
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

dir="$(bindir)"
if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "PostgreSQL is not installed and installing it needs root: sudo $0" >&2
        exit 1
    fi
    echo "installing PostgreSQL (Debian package postgresql)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends postgresql >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends postgresql >&2; }
    dir="$(bindir)"
fi
if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
    echo "PostgreSQL server programs not found under /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
echo "$dir"
