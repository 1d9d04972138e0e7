#!/usr/bin/env bash
# The cost of a tracking plan and of the live debugger on batched ingestion: the same gateway
# binary, in turn with no plan and no viewer (the anchor), with the realistic plan of
# plans/bench.yaml (20 events, 5 to 10 properties each, every event checked) in `observe` mode,
# and with two debugger streams open (curl reading the Server-Sent Events, as the page does).
# Each run: a fresh data directory, batches of 100 events from 16 clients in closed loop for
# SECONDS. One line per run: events/s acknowledged, CPU, peak RSS (and what the viewers read).
#   loadtest/ab-plans.sh SECONDS   (ROUNDS=3 by default, VARIANTS="anchor plan viewers"; the order turns each round; GATEWAY_BIN and LOADTEST_BIN: release builds)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../tests/lib.sh"
seconds="$1"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inlet/target}"
bin="${GATEWAY_BIN:-$CARGO_TARGET_DIR/release/inlet}"
loadtest="${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/inlet-loadtest}"
key="ab-write-key"
token="ab-plans-operator-token"
planned="[{name = \"load\", write_key = \"$key\", tracking_plan = {file = \"$here/plans/bench.yaml\", mode = \"observe\"}}]"
for round in $(seq 1 "${ROUNDS:-3}"); do
  # The order turns each round, so no variant always runs first after a fresh start.
  read -r -a variants <<< "${VARIANTS:-anchor plan viewers}"
  shift_by=$(( (round - 1) % ${#variants[@]} ))
  for variant in "${variants[@]:shift_by}" "${variants[@]:0:shift_by}"; do
    if [[ "$variant" == plan ]]; then
      start_fresh_gateway "$bin" "$key" INLET_ADMIN__TOKEN="$token" INLET_SOURCES="$planned"
    else
      start_fresh_gateway "$bin" "$key" INLET_ADMIN__TOKEN="$token"
    fi
    viewers=()
    if [[ "$variant" == viewers ]]; then
      for viewer in 1 2; do
        curl -sN -H "Authorization: Bearer $token" "$gateway_admin_url/admin/debugger/sources/load/events" \
          > "$work/viewer-$viewer.txt" &
        viewers+=("$!")
      done
      sleep 0.5
    fi
    report="$("$loadtest" run --target "$gateway_url" --pid "$gateway_pid" --concurrency 16 --duration "$seconds" \
      --write-key "$key" --mix batch=1)"
    seen=""
    if [[ ${#viewers[@]} -gt 0 ]]; then
      kill "${viewers[@]}"
      wait "${viewers[@]}" 2> /dev/null || true
      seen="; the viewers read $(grep -c '^data:' "$work/viewer-1.txt") and $(grep -c '^data:' "$work/viewer-2.txt") events"
    fi
    python3 - "$report" "$round" "$variant" "$seen" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); t = r["target"] or {}
print(f"round {sys.argv[2]} {sys.argv[3]}: {r['events_per_second']:,.0f} events/s, answers {r['statuses']}, "
      f"CPU {t.get('cpu_percent', 0):.0f} %, peak RSS {t.get('peak_rss_mib', 0):.0f} MiB{sys.argv[4]}")
PY
    stop_gateway
  done
done
