#!/bin/sh
# make bench-cache: what --cache costs a run, and what it saves one (docs/BENCHMARKS.md, "The
# answer store"). Over N distinct PNG files of 40 KB (default 10,000, made under out/ the first
# time), the seed chain, curl-multi with 64 in flight, against the mock on the same machine:
#   1. a first run with --cache (a new store) against one without, in turns, RUNS of each: the
#      CPU annotate used (user + sys, from --stats-json), images/s, and the store's size per image;
#   2. the fully cached re-run of the same folder: images/s (it asks no server), RUNS times;
#   3. (bench-store) the store itself at STORE_ENTRIES entries: inserts/s, lookups, bytes per
#      entry, with the synchronous=NORMAL it runs with.
# Usage: bench/cache.sh BUILD [N] [RUNS]
set -eu
B=${1:-build}
N=${2:-10000}
RUNS=${3:-3}
D=out/bench-cache-$N
mkdir -p out/bench-cache
last=$(printf %04d $(( (N - 1) / 1000 )))
if [ ! -d $D/$last ]; then $B/gen-images --size 40960 $N $D; fi
python3 - "$B" "$D" "$N" "$RUNS" <<'PY'
import json, os, signal, statistics, subprocess, sys
B, D, N, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
A = os.path.join(B, "annotate")
W = "out/bench-cache"
store = os.path.join(W, "answers.db")

def drop_store():
    for s in ("", "-wal", "-shm"):
        if os.path.exists(store + s):
            os.remove(store + s)

def run(url, cache):
    sj = os.path.join(W, "stats.json")
    cmd = [A, D, "--out", os.path.join(W, "rows.csv"), "--force", "--server", url, "--quiet",
           "--concurrency", "64", "--stats-json", sj] + (["--cache", store] if cache else [])
    subprocess.run(cmd, check=True)
    j = json.load(open(sj))
    if j["images_ok"] != N:
        sys.exit("bench-cache: %d of %d images ok" % (j["images_ok"], N))
    return {"cpu": j["cpu_user_s"] + j["cpu_sys_s"], "rate": j["images_per_s"], "requests": j["requests"],
            "hits": j.get("cache", {}).get("hits", 0)}

mock = subprocess.Popen([os.path.join(B, "mock-model-server"), "--port", "0"], stdout=subprocess.PIPE, text=True)
try:
    url = "http://127.0.0.1:" + mock.stdout.readline().strip().rsplit(":", 1)[1]
    run(url, False)  # the files into the page cache, the mock warm
    plain, cached, size = [], [], []
    for _ in range(RUNS):
        plain.append(run(url, False))
        drop_store()
        cached.append(run(url, True))
        size.append(sum(os.path.getsize(store + s) for s in ("", "-wal") if os.path.exists(store + s)))
    again = [run(url, True) for _ in range(RUNS)]
finally:
    mock.send_signal(signal.SIGTERM)
    mock.wait()

med = lambda xs, k: statistics.median(x[k] for x in xs)
print("%d distinct PNG files of 40 KB, the seed chain, curl-multi 64 in flight, the mock on the same machine;" % N)
print("medians of %d runs (first runs in turns: without, with a new store)" % RUNS)
print("%-34s %10s %10s %10s" % ("", "CPU s", "images/s", "requests"))
print("%-34s %10.2f %10.0f %10.0f" % ("first run, without --cache", med(plain, "cpu"), med(plain, "rate"), med(plain, "requests")))
over = 100.0 * (med(cached, "cpu") / med(plain, "cpu") - 1)
# Each run with a store follows one without: the median of those pairs' ratios is less moved by a
# neighbour's load that comes and goes than the ratio of the two medians.
pairs = statistics.median(100.0 * (c["cpu"] / p["cpu"] - 1) for p, c in zip(plain, cached))
print("%-34s %10.2f %10.0f %10.0f   CPU %+.1f%% (pairs: %+.1f%%)" % ("first run, with --cache", med(cached, "cpu"),
                                                                   med(cached, "rate"), med(cached, "requests"), over, pairs))
print("%-34s %10.2f %10.0f %10.0f   %d answers from the store" % ("fully cached re-run", med(again, "cpu"),
                                                                  med(again, "rate"), med(again, "requests"),
                                                                  med(again, "hits")))
per_image = statistics.median(size) / N
print("the store after a first run: %.0f bytes per image (%.2f GB per million images)" % (per_image, per_image * 1e6 / 1e9))
PY
