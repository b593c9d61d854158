#!/bin/sh
# make bench: every figure of docs/BENCHMARKS.md, printed as it is measured. Data sets are made
# under out/ the first time (1,000,000 files of 2 KB and 20,000 of 40 KB).
set -eu
B=${1:-build}
A=$B/annotate
mkdir -p out
echo "== machine"
nproc; grep -m1 "model name" /proc/cpuinfo || true; free -g | head -2
echo
echo "== base64 (make bench-micro)"
(taskset -c 1 $B/bench-b64 2>/dev/null || $B/bench-b64)
echo
echo "== resume: loading the done-set of a 1,000,000-row CSV (make bench-resume)"
$B/bench-resume 1000000 3
echo
if [ ! -d out/bench-1m ]; then $B/gen-images --size 2048 1000000 out/bench-1m; fi
if [ ! -d out/bench-40k/0099 ]; then $B/gen-images --size 40960 100000 out/bench-40k; fi
echo "== scanner against find over 1,000,000 files (make bench-scan DIR=out/bench-1m)"
$B/bench-scan out/bench-1m 3
echo
echo "== no injected latency, 40 KB images, mock skips decoding"
$A bench out/bench-40k --latency-ms 0 --trust-payload --concurrency 1,4,16,64,256 --workers 4 \
   --strategies serial,threads,processes,load=threads+query=processes,curl-multi \
   --report out/bench-nolatency.json --chart out/bench-nolatency.svg
echo
echo "== 20 ms latency per request, 40 KB images, mock skips decoding"
$A bench out/bench-40k --latency-ms 20 --trust-payload --concurrency 16,64,256,1024 \
   --strategies threads,curl-multi --report out/bench-20ms.json --chart out/bench-20ms.svg
$A bench out/bench-40k --latency-ms 20 --trust-payload --concurrency 16,64,256 \
   --strategies processes --report out/bench-20ms-processes.json --chart out/bench-20ms-processes.svg
echo
echo "== 20 ms latency per request, 2 KB images, mock skips decoding"
$A bench out/bench-1m --latency-ms 20 --trust-payload --concurrency 64,256,1024 --strategies threads,curl-multi \
   --report out/bench-20ms-small.json --chart out/bench-20ms-small.svg
echo
echo "== memory: curl-multi over 10,000 and over 1,000,000 images (2 KB each)"
log=$(mktemp)
$B/mock-model-server --port 0 --trust-payload >"$log" 2>&1 &
mock=$!
sleep 0.5
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")
for n in 10000 1000000; do
  $A out/bench-1m --server http://127.0.0.1:$port --strategy curl-multi --concurrency 256 --max-images $n \
     --out out/bench-mem.csv --quiet --stats-json out/bench-mem-$n.json || true
  python3 -c "import json; d=json.load(open('out/bench-mem-$n.json')); print('$n images: %d ok, %.0f images/s, peak RSS %.1f MB' % (d['images_ok'], d['images_per_s'], d['peak_rss_kb']/1024))"
done
kill $mock; wait $mock 2>/dev/null || true
rm -f "$log" out/bench-mem.csv
echo
echo "== S3: the same images from s3rver and from a folder; listing 1,000,000 keys (make bench-s3, make bench-s3list)"
sh bench/s3run.sh $B
sh bench/s3list.sh $B
echo
echo "== per-stage concurrency limits against a GPU-like mock (make bench-capacity)"
sh bench/capacity.sh $B
echo
echo "== what to run against servers of different capacities (make bench-sweep)"
sh bench/sweep.sh $B
echo "== cost per request against nginx, beside wrk and aiohttp (make bench-cost)"
sh bench/cost.sh $B
