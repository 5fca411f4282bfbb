#!/usr/bin/env bash
# The documented check of what the MLflow UI shows (docs/mlflow-ui.md): start `mlflow ui` on a
# study's store, open the addresses `study run` prints in a real headless Chromium, save a
# screenshot of each view, stop the server.
#   docs/screenshot_mlflow.sh [STORE_URI] [EXPERIMENT] [OUT_DIR]
# defaults: sqlite:///mlflow.db, demo, docs/figures. Needs Chromium (Debian's `chromium`) and
# node with playwright-core (`npm install playwright-core` in a folder of your choice, named by
# NODE_PATH=<folder>/node_modules); PY names the Python with MLflow (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
uri=${1:-sqlite:///mlflow.db}
experiment=${2:-demo}
out=${3:-docs/figures}
py=${PY:-.venv/bin/python}
case $out in /*) ;; *) out=$PWD/$out ;; esac
port=$($py -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
read -r id summary < <($py -c "
from mlflow.tracking import MlflowClient
from study.summary import find_summary
client = MlflowClient('$uri')
e = client.get_experiment_by_name('$experiment').experiment_id
print(e, find_summary(client, e))")
setsid $py -m mlflow ui --backend-store-uri "$uri" --host 127.0.0.1 --port "$port" \
  >/tmp/mlflow-ui.log 2>&1 &
server=$!
trap 'kill -- -$server 2>/dev/null || true' EXIT            # the server and its workers
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
node docs/screenshot_mlflow.js "http://127.0.0.1:$port" "$id" "$summary" "$out"
