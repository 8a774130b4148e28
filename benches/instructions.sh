#!/usr/bin/env bash
# Instructions the server executes for fixed workloads, counted by valgrind's
# callgrind: repeatable on a noisy machine where wall-clock figures are not.
# Compares two revurb binaries (e.g. before and after a refactor) with the same
# load generator and writes a markdown table to benches/instructions.md.
#
#   benches/instructions.sh OLD_BINARY NEW_BINARY [LOADGEN]
#
# Needs valgrind and curl. Each workload runs once per binary on port 18090.
set -euo pipefail
old=$1 new=$2 loadgen=${3:-./target/release/loadgen}
port=18090
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# name | loadgen arguments | JSON field holding the unit count
workloads=(
  "fanout 1000 subs, 20 events|fanout --n 1000 --channels 1 --rate 5 --duration 4|deliveries"
  "api, 2 connections, 5 s|api --connections 2 --duration 5|requests"
  "clientevents 200 members|clientevents --n 200 --group 2 --rate 200 --duration 5|deliveries"
  "conns 2000 x 10 channels|conns --n 2000 --rate 1000 --channels 10 --hold 1|established"
)

measure() { # binary, loadgen args, field -> "instructions units"
  local bin=$1 args=$2 field=$3
  REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret \
    REVERB_METRICS_PORT=0 valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
    "$bin" start --host 127.0.0.1 --port $port >/dev/null 2>"$out/err" &
  local pid=$!
  for _ in $(seq 100); do
    curl -sf "127.0.0.1:$port/up" >/dev/null && break
    sleep 0.2
  done
  # shellcheck disable=SC2086
  "$loadgen" $args --url "ws://127.0.0.1:$port" >"$out/run.json"
  kill -TERM $pid
  wait $pid || true
  local ins units
  ins=$(awk '/^summary:/ {print $2}' "$out/cg")
  units=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$out/run.json" "$field")
  echo "$ins $units"
}

{
  echo "## Instructions per unit of work (callgrind)"
  echo
  echo "Written by \`benches/instructions.sh $old $new\` on $(date -u +%Y-%m-%d)."
  echo "Totals include start-up and shutdown; fewer is better."
  echo
  echo "| workload | unit | old: instructions (units) | new: instructions (units) | new / old per unit |"
  echo "|---|---|---|---|---|"
  for w in "${workloads[@]}"; do
    IFS='|' read -r name args field <<<"$w"
    read -r oi ou < <(measure "$old" "$args" "$field")
    read -r ni nu < <(measure "$new" "$args" "$field")
    ratio=$(python3 -c "print(f'{($ni/$nu)/($oi/$ou):.3f}')")
    echo "| $name | $field | $oi ($ou) | $ni ($nu) | $ratio |"
  done
} | tee benches/instructions.md
