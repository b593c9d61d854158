#!/bin/sh
# make bench-capacity: the concurrency limits against a mock that behaves like a GPU server
# (docs/BENCHMARKS.md, "Each endpoint at its own capacity"). Every endpoint serves K requests
# at once, 50 ms each, queues at most Q more and answers 503 beyond; fixed totals against
# --concurrency auto, which is not told K. The data set (30,000 PNG files of 2 KB) is made under
# out/ the first time.
set -eu
B=${1:-build}
A=$B/annotate
D=out/bench-capacity
mkdir -p out
if [ ! -d $D/0029 ]; then $B/gen-images --size 2048 30000 $D; fi
echo "== capacity 4, queue 4, 50 ms: fixed totals against auto (curl-multi)"
$A bench $D --capacity 4 --queue-max 4 --latency-ms 50 --concurrency 8,20,64,auto --strategies curl-multi \
   --duration 20 --report out/bench-capacity-4.json --chart out/bench-capacity-4.svg
echo
echo "== capacity 64, queue 64, 50 ms: auto must grow, not only shrink (curl-multi)"
$A bench $D --capacity 64 --queue-max 64 --latency-ms 50 --concurrency 64,320,auto --strategies curl-multi \
   --duration 20 --report out/bench-capacity-64.json --chart out/bench-capacity-64.svg
echo
echo "== capacity 4, queue 4, 50 ms: the blocking strategies (--workers N; auto: --concurrency auto within the largest N given)"
$A bench $D --capacity 4 --queue-max 4 --latency-ms 50 --concurrency 20,auto --strategies threads,processes \
   --duration 20 --report out/bench-capacity-4-blocking.json --chart out/bench-capacity-4-blocking.svg
