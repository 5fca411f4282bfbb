#!/usr/bin/env bash
# The Debian packages the cluster tests (`make test-cluster`) use, installed when absent:
# PostgreSQL (the MLflow tracking server's database, as on the cluster's head) and Chromium (a
# headless browser that opens the MLflow UI).
set -euo pipefail
missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || command -v initdb >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
