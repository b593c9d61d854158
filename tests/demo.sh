#!/bin/sh
# make demo: start the mock model server on a free port, annotate sample_images/ into
# out/results.csv with the default strategy, stop the server, show the result.
set -u
BUILD=${1:-build}
mkdir -p out
log=$(mktemp)
"$BUILD/mock-model-server" --port 0 --latency-ms 20 --latency-dist uniform >"$log" 2>&1 &
mock=$!
trap 'kill $mock 2>/dev/null; wait $mock 2>/dev/null; rm -f "$log"' EXIT INT TERM
port=""
for _ in $(seq 50); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")
  [ -n "$port" ] && break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "demo: the mock model server did not start:" >&2
  cat "$log" >&2
  exit 1
fi
echo "demo: mock model server on 127.0.0.1:$port (20 ms latency per request)"
# A fresh demo each time: annotate itself never overwrites a results file without --force.
rm -f out/results.csv
echo "demo: $BUILD/annotate sample_images --server http://127.0.0.1:$port --out out/results.csv"
"$BUILD/annotate" sample_images --server "http://127.0.0.1:$port" --out out/results.csv
rc=$?
echo
echo "demo: out/results.csv (first columns):"
cut -c1-150 out/results.csv
echo
echo "demo: the mock server saw: $(curl -s "http://127.0.0.1:$port/stats" 2>/dev/null || echo '(curl not installed)')"
exit $rc
