#!/usr/bin/env bash
# PostgreSQL for the cluster tests (`make test-cluster`) and for a local MLflow tracking server
# with a database backend: Debian's packages, installed when `initdb` is not already there.
set -euo pipefail
if [ -x /usr/lib/postgresql/15/bin/initdb ] || command -v initdb >/dev/null; then
    exit 0
fi
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
