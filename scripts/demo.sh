#!/usr/bin/env bash
# The README's first command: train the Abalone sample model, serve it, send CSV, JSON and JSON Lines,
# print predictions and probabilities, stop the server. Needs nothing but the .venv `make` built.
set -euo pipefail

port="${DEMO_PORT:-8085}"
work="$(mktemp -d)"
model_dir="$work/model"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        echo "== server stopped"
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== training an XGBoost classifier on the bundled Abalone data (predicts Sex: F, I, M)"
modelcrate sample-model --framework xgboost --format json --task classification --output "$model_dir"

echo "== serving it on 127.0.0.1:$port"
SAGEMAKER_CONTAINER_LOG_LEVEL=30 modelcrate serve --model-dir "$model_dir" --host 127.0.0.1 --port "$port" --workers 1 &
server_pid=$!
python - "$port" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 60
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ping", timeout=1)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("server did not become healthy within 60 s")
        time.sleep(0.1)
PY
url="http://127.0.0.1:$port"
keys="inference_output=predicted_label,probability,probabilities"

echo "== text/csv (two records) -> predicted labels"
printf '0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15\n0.35,0.265,0.09,0.2255,0.0995,0.0485,0.07,7\n' \
    | modelcrate invoke --url "$url" --content-type text/csv --accept text/csv -

echo "== text/csv -> labels with probabilities (X-Amzn-SageMaker-Custom-Attributes: $keys)"
printf '0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15\n' \
    | modelcrate invoke --url "$url" --content-type text/csv --accept text/csv --custom-attributes "$keys" -

echo "== application/json (records keyed by feature name)"
echo '{"instances": [{"length": 0.53, "diameter": 0.42, "height": 0.135, "whole_weight": 0.677, "shucked_weight": 0.2565, "viscera_weight": 0.1415, "shell_weight": 0.21, "rings": 9}]}' \
    | modelcrate invoke --url "$url" --content-type application/json --custom-attributes "$keys" -

echo "== application/jsonlines"
printf '[0.44,0.365,0.125,0.516,0.2155,0.114,0.155,10]\n[0.33,0.255,0.08,0.205,0.0895,0.0395,0.055,7]\n' \
    | modelcrate invoke --url "$url" --content-type application/jsonlines --accept application/jsonlines \
        --custom-attributes "$keys" -
