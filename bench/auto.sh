#!/bin/sh
# make bench-auto: whether --concurrency auto loses anything where a fixed number wins, in one run
# so that the ratios compare (bench/auto.py says what is measured and the goals). nginx with its
# echo module (bench/nginx.sh) with no latency and with 20 ms; the mock model server slowing
# with time (--slowdown-ms) and with one worker and seconds of latency (--capacity 1).
# 30,000 images of 40 KB under out/bench-auto/data30k (1.2 GB) and 4,000 of 2 KB under
# out/bench-auto/data are made the first time. ROUNDS (8) rounds, medians.
set -eu
B=${1:-build}
O=out/bench-auto
mkdir -p $O
. bench/nginx.sh
bench_need nginx libnginx-mod-http-echo
mkdir -p out/bench-cost
if [ ! -d out/bench-cost/data/0009 ]; then $B/gen-images --size 40960 10000 out/bench-cost/data; fi
if [ ! -d $O/data30k/0029 ]; then $B/gen-images --size 40960 30000 $O/data30k; fi
if [ ! -d $O/data/0003 ]; then $B/gen-images --size 2048 4000 $O/data; fi
nginx_start $O
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///') (1 worker, echo module) on $U0 (no latency) and $U20 (20 ms); $(nproc) cores"
python3 bench/auto.py $B "$U0" "$U20" "${ROUNDS:-8}"
