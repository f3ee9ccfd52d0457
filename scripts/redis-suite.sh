#!/usr/bin/env bash
# Runs units of Redis's own test suite (7.0.x, external-server mode) through the proxy, or, for
# comparison, directly against Redis (--direct) or through a bare Node socket pipe (--pipe).
# A development check, not part of `npm test`: the suite is not in this repository.
#
#   scripts/redis-suite.sh [--direct | --pipe | --proxy] [--one-run] [--units "unit/multi unit/expire"]
#                          [--timeout SECONDS-PER-UNIT, default 300] <redis source dir>
#
# <redis source dir> holds the suite's tests/ folder (redis/redis at the tag of the installed
# redis-server). The suite is copied to a temporary folder whose src/ links to the installed
# redis-server, redis-cli, redis-benchmark and redis-check-aof. Redis runs with the suite's own
# tests/assets/default.conf on a free port. By default every unit gets a fresh redis-server and a
# fresh proxy or pipe in front of it, so a unit that leaves Redis in a bad state (e.g. maxmemory set)
# does not fail the next one; --one-run runs all units in one tclsh against one server instead.
# Prints one line per unit (passed / failed cases) and exits non-zero if any unit failed.
set -euo pipefail

MODE=proxy
UNITS="unit/type/string unit/type/incr unit/multi unit/pubsub unit/protocol unit/expire unit/keyspace unit/type/list unit/type/hash unit/scripting"
UNIT_TIMEOUT=300
ONE_RUN=0
SOURCE=
while [ $# -gt 0 ]; do
  case "$1" in
    --direct) MODE=direct ;;
    --pipe) MODE=pipe ;;
    --proxy) MODE=proxy ;;
    --units) UNITS="$2"; shift ;;
    --one-run) ONE_RUN=1 ;;
    --timeout) UNIT_TIMEOUT="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "redis-suite: unknown option $1" >&2; exit 2 ;;
    *) SOURCE="$1" ;;
  esac
  shift
done
if [ -z "$SOURCE" ] || [ ! -f "$SOURCE/tests/test_helper.tcl" ]; then
  echo "redis-suite: usage: $0 [--direct|--pipe|--proxy] [--units LIST] [--timeout S] <redis source dir with tests/test_helper.tcl>" >&2
  exit 2
fi
SOURCE=$(cd "$SOURCE" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
for tool in tclsh redis-server redis-cli redis-benchmark redis-check-aof node timeout; do
  command -v "$tool" >/dev/null || { echo "redis-suite: $tool not found in PATH" >&2; exit 2; }
done
# The proxy, and the pipe's keepLastReplies, come from the build.
if [ "$MODE" != direct ] && [ ! -f "$REPO/dist/cli.js" ]; then
  echo "redis-suite: $REPO/dist/cli.js missing: run npm run build first" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/redis-suite.XXXXXX")
REDIS_PID=
FRONT_PID=
stop_servers() {
  # Only the processes this script started, by their id.
  for pid in $FRONT_PID $REDIS_PID; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $FRONT_PID $REDIS_PID; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  FRONT_PID=
  REDIS_PID=
}
# Logs are kept unless every unit passed (also after a timeout or Ctrl-C).
KEEP_LOGS=1
trap 'stop_servers; [ "$KEEP_LOGS" = 1 ] || rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# The suite, with src/ pointing at the installed binaries.
cp -r "$SOURCE/tests" "$WORK/tests"
mkdir "$WORK/src"
for tool in redis-server redis-cli redis-benchmark redis-check-aof; do
  ln -s "$(command -v "$tool")" "$WORK/src/$tool"
done

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Waits until PING on the port answers PONG (up to 10 s); fails if the process died.
wait_for_pong() {
  local port=$1 pid=$2
  for _ in $(seq 100); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Starts redis-server configured as the suite configures its own servers, plus the front (proxy or
# pipe) unless --direct; sets TARGET_PORT.
start_servers() {
  local unit_dir=$1
  mkdir -p "$unit_dir/redis"
  local redis_port
  redis_port=$(free_port)
  redis-server "$WORK/tests/assets/default.conf" --port "$redis_port" --dir "$unit_dir/redis" \
    --pidfile "$unit_dir/redis/redis.pid" --logfile "$unit_dir/redis.log" --daemonize no &
  REDIS_PID=$!
  wait_for_pong "$redis_port" "$REDIS_PID" || { echo "redis-suite: redis-server did not start (see $unit_dir/redis.log)" >&2; return 1; }
  case "$MODE" in
    direct) TARGET_PORT=$redis_port; return 0 ;;
    pipe)
      TARGET_PORT=$(free_port)
      node "$REPO/scripts/socket-pipe.mjs" --port "$TARGET_PORT" --upstream "127.0.0.1:$redis_port" >"$unit_dir/front.log" 2>&1 &
      ;;
    proxy)
      TARGET_PORT=$(free_port)
      node "$REPO/dist/cli.js" --port "$TARGET_PORT" --upstream "redis://127.0.0.1:$redis_port" >"$unit_dir/front.log" 2>&1 &
      ;;
  esac
  FRONT_PID=$!
  wait_for_pong "$TARGET_PORT" "$FRONT_PID" || { echo "redis-suite: $MODE did not start (see $unit_dir/front.log)" >&2; cat "$unit_dir/front.log" >&2; return 1; }
}

# Per unit of a suite log: "unit ok err state" (state: done, aborted = running when the log ended,
# notrun). With --clients 1 the units run in the order given and each ends with "[k/n done]: unit".
summarize() {
  local log=$1; shift
  awk -v units="$*" '
    BEGIN { n = split(units, order, " "); current = 1 }
    /^\[ok\]:/ { ok++ }
    /^\[err\]:/ { err++ }
    /^\[[0-9]+\/[0-9]+ done\]: / {
      done[$3] = 1; oks[$3] = ok + 0; errs[$3] = err + 0; ok = 0; err = 0
    }
    END {
      aborted = 0
      for (i = 1; i <= n; i++) {
        u = order[i]
        if (u in done) print u, oks[u], errs[u], "done"
        else if (!aborted) { print u, ok + 0, err + 0, "aborted"; aborted = 1 }
        else print u, 0, 0, "notrun"
      }
    }' "$log"
}

# Runs the units in one tclsh against the running servers, appends per-unit lines to RESULTS.
run_units() {
  local log=$1; shift
  local args=()
  for unit in "$@"; do args+=(--single "$unit"); done
  local status=0
  # TERM=dumb: no colour codes in the log, so the [ok]/[err] lines can be counted.
  (cd "$WORK" && TERM=dumb timeout --kill-after=10 "$((UNIT_TIMEOUT * $#))" tclsh tests/test_helper.tcl \
      --host 127.0.0.1 --port "$TARGET_PORT" "${args[@]}" --clients 1) >"$log" 2>&1 || status=$?
  local reason="exit $status"
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then reason="timed out"; fi
  if grep -q '^\[exception\]:' "$log"; then reason="exception, run aborted"; fi
  while read -r unit ok err state; do
    local verdict=passed
    case "$state" in
      notrun) verdict="FAILED (not run: an earlier unit aborted the run)" ;;
      aborted) verdict="FAILED ($reason)" ;;
      *) [ "$err" -eq 0 ] || verdict=FAILED ;;
    esac
    [ "$verdict" = passed ] || FAILED_UNITS=$((FAILED_UNITS + 1))
    TOTAL_OK=$((TOTAL_OK + ok))
    TOTAL_ERR=$((TOTAL_ERR + err))
    local line
    line=$(printf '%-22s %4d passed %3d failed  %s' "$unit" "$ok" "$err" "$verdict")
    echo "$line"
    # The failed cases of this unit: [err] lines carry the unit's file name.
    grep -E "^\[err\]:.* in tests/$unit\.tcl\$" "$log" | sed 's/^/    /' || true
    RESULTS+="$line"$'\n'
  done < <(summarize "$log" "$@")
  grep -E '^\[exception\]:' "$log" | sed 's/^/    /' || true
}

echo "redis-suite: mode $MODE, redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), suite $SOURCE, logs in $WORK"
FAILED_UNITS=0
TOTAL_OK=0
TOTAL_ERR=0
RESULTS=
if [ "$ONE_RUN" = 1 ]; then
  # All units in one tclsh against one server, as a long-lived deployment would see them.
  run_dir="$WORK/runs/all"
  mkdir -p "$run_dir"
  if start_servers "$run_dir"; then
    # shellcheck disable=SC2086 # UNITS is a space-separated list
    run_units "$run_dir/suite.log" $UNITS
  else
    FAILED_UNITS=1
  fi
  stop_servers
else
  for unit in $UNITS; do
    unit_dir="$WORK/runs/${unit//\//_}"
    mkdir -p "$unit_dir"
    if start_servers "$unit_dir"; then
      run_units "$unit_dir/suite.log" "$unit"
    else
      RESULTS+=$(printf '%-22s %s' "$unit" "FAILED (servers did not start)")$'\n'
      FAILED_UNITS=$((FAILED_UNITS + 1))
    fi
    stop_servers
  done
fi

echo
echo "redis-suite ($MODE$([ "$ONE_RUN" = 1 ] && echo ', one run')): $TOTAL_OK passed, $TOTAL_ERR failed; $FAILED_UNITS unit(s) failed"
printf '%s' "$RESULTS"
if [ "$FAILED_UNITS" -gt 0 ]; then
  echo "logs kept in $WORK/runs"
  exit 1
fi
KEEP_LOGS=0
