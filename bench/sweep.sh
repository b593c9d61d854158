#!/bin/sh
# make bench-sweep: annotate bench --sweep against servers of different capacities
# (docs/BENCHMARKS.md, "What to run against your servers"). The mock is started here, not by
# bench, as one server with a capacity per endpoint: model_03 serves 2 requests at once and
# queues 2 more, the others 8 and 8, 20 ms each, 503 beyond. The sweep's recommended pipeline
# is then run against the seed's pipeline at fixed totals and auto. The data set (6,000 PNG
# files of 2 KB) is made under out/ the first time.
set -eu
B=${1:-build}
A=$B/annotate
D=out/bench-sweep
mkdir -p out
if [ ! -d $D/0005 ]; then $B/gen-images --size 2048 6000 $D; fi
$B/mock-model-server --port 0 --latency-ms 20 --capacity 8 --capacity model_03=2 --queue-max 8 \
    --queue-max model_03=2 > out/bench-sweep-mock.log &
MOCK=$!
trap 'kill $MOCK 2>/dev/null || true' EXIT INT TERM
sleep 0.5
URL=http://$(sed -n 's/^listening on //p' out/bench-sweep-mock.log)
echo "== the sweep: each stage's concurrency in turn"
$A bench $D --server $URL --config fixtures/pipeline.json --sweep --duration 5 \
   --report out/bench-sweep.json --recommend out/bench-sweep-recommended.json || true
echo
echo "== the recommended pipeline"
$A bench $D --server $URL --config out/bench-sweep-recommended.json --strategies curl-multi \
   --concurrency "$(sed -n 's/.*"concurrency":[[:space:]]*\([0-9]*\).*/\1/p' out/bench-sweep.json | tail -1)" --duration 8 \
   --report out/bench-sweep-tuned.json --chart out/bench-sweep-tuned.svg || true
echo
echo "== the seed's pipeline: fixed totals and auto"
$A bench $D --server $URL --config fixtures/pipeline.json --strategies curl-multi --concurrency 24,64,auto \
   --duration 8 --report out/bench-sweep-untuned.json --chart out/bench-sweep-untuned.svg || true
