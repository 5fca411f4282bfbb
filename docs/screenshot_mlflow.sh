#!/usr/bin/env bash
# The documented check of what the MLflow UI shows: start `mlflow ui` on a store, open a page of
# the study's experiment in a real headless Chromium, save a screenshot, stop the server.
#   docs/screenshot_mlflow.sh [STORE_URI] [EXPERIMENT] [OUT.png] [PAGE]
# PAGE: `runs` (the runs table, default) or `runs/<run id>` (one run's page).
# defaults: sqlite:///mlflow.db, demo, docs/figures/mlflow_runs.png, runs
set -euo pipefail
cd "$(dirname "$0")/.."
uri=${1:-sqlite:///mlflow.db}
experiment=${2:-demo}
out=${3:-docs/figures/mlflow_runs.png}
page=${4:-runs}
case $out in /*) ;; *) out=$PWD/$out ;; esac
port=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
id=$(.venv/bin/python -c "from mlflow.tracking import MlflowClient; print(MlflowClient('$uri').get_experiment_by_name('$experiment').experiment_id)")
.venv/bin/mlflow ui --backend-store-uri "$uri" --host 127.0.0.1 --port "$port" >/tmp/mlflow-ui.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
profile=$(mktemp -d)
# MLflow 3.17 opens experiments in its GenAI view unless the address asks for model training
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1600,900 --virtual-time-budget=20000 \
  --screenshot="$out" "http://127.0.0.1:$port/#/experiments/$id/$page?workflowType=machine_learning" \
  2>/dev/null
echo "wrote $out (experiment $experiment, id $id, page $page)"
