#!/bin/sh
# make bench-s3: images from an S3-compatible store against the same images in a local folder.
#
#  1. N images of 40 KB (default 6000, out/bench-s3-imgs) are put into s3rver (the S3 server the
#     tests run, started here on a free port with its data in a temporary folder). Then
#     `annotate bench` measures the same point over the folder and over s3://bench/img/, against
#     the same model server (the mock bench starts, payloads not decoded, 20 ms per request),
#     curl-multi, in two settings:
#       a. a model server that is the limit, as a GPU server is: --capacity 8 (8 requests served
#          at once per endpoint, the rest queued), concurrency 64;
#       b. the mock as fast as it goes on this machine: no capacity, concurrency 256; here
#          s3rver (one Node.js thread) is the limit, and the share of a core it used is printed.
#     Each prints the folder's images/s, the bucket's, and their ratio (the issue asks for 80 %).
#  2. A run over a synthetic bucket of 1,000,000 keys (tests/servers/s3sig.py --synthetic, which
#     also checks each request's signature) lists every key but fetches one in 1000 (--shard
#     0/1000); its peak resident memory is printed beside that of a run listing 10,000 keys the
#     same way: a flat listing keeps them close.
# Servers are stopped by their PIDs at the end.
set -eu
B=${1:-build}
N=${2:-6000}
A=$B/annotate
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
mkdir -p out
data=$(mktemp -d)
s3log=out/bench-s3-s3rver.log
synlog=out/bench-s3-synth.log
s3pid=
synpid=
mockpid=
cleanup() {
  for p in $s3pid $synpid $mockpid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for "listening on 127.0.0.1:PORT" in log $1 from pid $2 and prints PORT. (Each log is
# removed before its server starts: an old one would name an old port.)
port_of() {
  i=0
  while :; do
    p=$(sed -n 's/^listening on 127.0.0.1:\([0-9][0-9]*\)$/\1/p' "$1" 2>/dev/null)
    [ -n "$p" ] && break
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 "$2" 2>/dev/null; then echo "s3run.sh: a server did not start:" >&2; cat "$1" >&2; exit 1; fi
    sleep 0.1
  done
  echo "$p"
}

# CPU seconds of process $1 so far.
cpu_of() { awk '{printf "%.2f", ($14 + $15) / 100}' /proc/$1/stat; }

if [ "$(find out/bench-s3-imgs -name '*.png' 2>/dev/null | wc -l)" -ne "$N" ]; then
  rm -rf out/bench-s3-imgs
  $B/gen-images --size 40960 "$N" out/bench-s3-imgs >/dev/null
fi
rm -f $s3log $synlog out/bench-s3-mock.log
node --openssl-legacy-provider tests/servers/s3rver.js build/node/node_modules "$data" bench >$s3log 2>&1 &
s3pid=$!
port=$(port_of $s3log $s3pid)

echo "== putting $N images of 40 KB into s3rver (s3://bench/img/)"
$PY - "$port" out/bench-s3-imgs <<'EOF'
import http.client, os, sys
port, root = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port)
n = 0
for d, _, files in sorted(os.walk(root)):
    for f in sorted(files):
        p = os.path.join(d, f)
        with open(p, "rb") as fh:
            body = fh.read()
        c.request("PUT", "/bench/img/" + os.path.relpath(p, root), body, {"Content-Type": "image/png"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("PUT %s: HTTP %d" % (p, r.status))
        n += 1
print("%d objects" % n)
EOF

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1 \
       AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_CONFIG_FILE=/dev/null

# One setting: the same point over the folder and over the bucket; $1 names it, the rest are
# bench's options.
compare() {
  name=$1
  shift
  echo
  echo "== $name: the local folder"
  $A bench out/bench-s3-imgs "$@" --report out/bench-s3-folder.json --chart out/bench-s3-folder.svg
  echo "== $name: the same images from s3rver"
  c0=$(cpu_of $s3pid)
  t0=$(date +%s.%N)
  $A bench s3://bench/img/ "$@" --report out/bench-s3-bucket.json --chart out/bench-s3-bucket.svg
  c1=$(cpu_of $s3pid)
  t1=$(date +%s.%N)
  $PY - "$name" "$c0" "$c1" "$t0" "$t1" <<'EOF'
import json, sys
def best(p):
    pts = [x for x in json.load(open(p))["points"] if x.get("images_per_s")]
    return max(x["images_per_s"] for x in pts) if pts else 0.0
name, c0, c1, t0, t1 = sys.argv[1], *map(float, sys.argv[2:])
f, s = best("out/bench-s3-folder.json"), best("out/bench-s3-bucket.json")
print("%s: folder %.0f images/s, bucket %.0f images/s: %.0f %% of the folder's (s3rver used %.0f %% of a core)"
      % (name, f, s, 100 * s / f if f else 0, 100 * (c1 - c0) / (t1 - t0)))
EOF
}

common="--latency-ms 20 --trust-payload --strategies curl-multi --duration 8 --window 0.5"
compare "a. the model server is the limit (capacity 8)" $common --capacity 8 --concurrency 64
compare "b. the mock as fast as it goes" $common --concurrency 256

echo
echo "== listing 1,000,000 keys through a run (one in 1000 fetched), against 10,000"
$PY tests/servers/s3sig.py --key AKIABENCHKEY00000000 --secret bench-secret --synthetic 1000000 >$synlog 2>&1 &
synpid=$!
sport=$(port_of $synlog $synpid)
$B/mock-model-server --port 0 --trust-payload >out/bench-s3-mock.log 2>&1 &
mockpid=$!
mport=$(port_of out/bench-s3-mock.log $mockpid)
export AWS_ACCESS_KEY_ID=AKIABENCHKEY00000000 AWS_SECRET_ACCESS_KEY=bench-secret AWS_ENDPOINT_URL=http://127.0.0.1:$sport
for prefix in syn/0000 syn/; do
  rm -f out/bench-s3-list.csv
  $A "s3://synth/$prefix" --server http://127.0.0.1:$mport --shard 0/1000 --quiet --out out/bench-s3-list.csv \
     --stats-json out/bench-s3-list.json || true
  $PY -c "
import json; d = json.load(open('out/bench-s3-list.json'))
print('s3://synth/$prefix: listed, %d images of this shard annotated in %.1f s, peak RSS %.1f MB' % (
    d['images_found'], d['elapsed_s'], d['peak_rss_kb'] / 1024))"
done
rm -f out/bench-s3-list.csv
