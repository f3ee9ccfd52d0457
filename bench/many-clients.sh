#!/usr/bin/env bash
# Where the time of many clients goes (issue "Operate it", item 7): the proxy or a bare Node pipe
# (scripts/socket-pipe.mjs) under redis-benchmark GET -P 1, profiled with node --cpu-prof or with
# the system calls counted by strace -f -c. Compare -c 50 with -c 1000, the proxy with the pipe.
#
# Usage: npm run build && bench/many-clients.sh <proxy|pipe> <clients> <cpu-prof|strace> [requests]
# Output: bench/results/many-clients-<target>-<clients>/ (the .cpuprofile, summarized with
# `node bench/profile.mjs <file>`, or strace.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?proxy or pipe} clients=${2:?clients} mode=${3:?cpu-prof or strace} requests=${4:-200000}
out="bench/results/many-clients-$target-$clients"
rm -rf "$out" && mkdir -p "$out"
free_port() { node -e "const s=require('net').createServer().listen(0,()=>{console.log(s.address().port);s.close()})"; }
redis_port=$(free_port) proxy_port=$(free_port)
redis-server --port "$redis_port" --save '' --appendonly no >"$out/redis.log" 2>&1 &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null || true' EXIT
sleep 0.5
if [ "$target" = proxy ]; then
  program=(dist/cli.js --port "$proxy_port" --upstream "redis://127.0.0.1:$redis_port" --log-level warn)
else
  program=(scripts/socket-pipe.mjs --port "$proxy_port" --upstream "127.0.0.1:$redis_port")
fi
if [ "$mode" = strace ]; then
  strace -f -c -o "$out/strace.txt" node "${program[@]}" >"$out/target.log" 2>&1 &
else
  node --cpu-prof --cpu-prof-dir="$out" "${program[@]}" >"$out/target.log" 2>&1 &
fi
sleep 2
redis-benchmark -p "$proxy_port" -c "$clients" -n "$requests" -t get -P 1 -r 100000 -q | tr '\r' '\n' | tail -2
# SIGINT to node itself (under strace, its child), so that it writes its profile and exits.
pkill -INT -f -- "--port $proxy_port" || true
wait %2 2>/dev/null || true
ls "$out"
