#!/bin/sh
# make bench-cost: the client's cost per request against nginx (docs/BENCHMARKS.md, "Cost per
# request"). nginx with its echo module (bench/nginx.sh) answers the seed's five endpoints with
# fixed valid answers (model_04: two sub-images, so six requests per image), with no added
# latency, on a free 127.0.0.1 port, from a private prefix under out/bench-cost. Measured in one run, at 64 in
# flight over 10,000 images of 40 KB: annotate curl-multi (images/s, requests/s, CPU per request
# = (user + sys) / requests, from /usr/bin/time), wrk posting the same ~54 KB body to one
# endpoint, and a Python asyncio + aiohttp client (bench/aiohttp_client.py). Then the latency
# check: nginx answering after 20 ms (echo_sleep), annotate at 256 in flight and at 1024 with
# --loops 2, as a fraction of concurrency / latency. Each is run ROUNDS times (3), the clients
# taking turns, and medians are reported. nginx, its echo module, wrk and aiohttp are
# installed here when missing (not by make deps).
set -eu
B=${1:-build}
A=$B/annotate
O=out/bench-cost
D=$O/data
C=64
mkdir -p $O
. bench/nginx.sh
bench_need nginx libnginx-mod-http-echo wrk python3-aiohttp
if [ ! -d $D/0009 ]; then $B/gen-images --size 40960 10000 $D; fi
nginx_start $O
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///') (1 worker, echo module) on $U0 (no latency) and $U20 (20 ms); $(nproc) cores"
# The body annotate sends model_01 for the first image, for wrk.
first=$(find $D -type f | sort | head -1)
python3 -c 'import base64,sys; sys.stdout.write("[{\"im_str\":\"%s\",\"model_03\":null}]" % base64.b64encode(open(sys.argv[1],"rb").read()).decode())' \
  "$first" >$O/body.json
cat >$O/post.lua <<LUA
local f = io.open("$(pwd)/$O/body.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA

# annotate's run: prints images/s, requests/s and CPU per request; sets IPS RPS US.
run_annotate() { # url concurrency loops label
  rm -f $O/results.csv $O/stats.json
  /usr/bin/time -f "%U %S %e" -o $O/time.txt $A $D --server $1 --out $O/results.csv --force --quiet \
    --concurrency $2 --loops $3 --stats-json $O/stats.json || true
  set -- "$@" $(cat $O/time.txt)
  python3 - "$O/stats.json" "$4" "$5" "$6" "$7" "$2" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
def find(o, keys):
    if isinstance(o, dict):
        for k in keys:
            if k in o and isinstance(o[k], (int, float)):
                return o[k]
        for v in o.values():
            r = find(v, keys)
            if r is not None:
                return r
    return None
images = find(st, ["images_ok", "ok"]) or 0
reqs = find(st, ["requests"]) or 0
label, user, sys_, wall, conc = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
secs = find(st, ["elapsed_s", "seconds", "wall_s"]) or wall
print(f"{label}: {images} images, {reqs} requests in {secs:.2f} s: {images/secs:.0f} images/s, "
      f"{reqs/secs:.0f} requests/s; CPU {user:.2f} user + {sys_:.2f} sys = {(user+sys_)/reqs*1e6:.1f} us per request")
open(sys.argv[1] + ".line", "w").write(f"{images/secs} {reqs/secs} {(user+sys_)/reqs*1e6}\n")
PY
}

# The three clients take turns, ROUNDS times (default 3); the figures are each one's median, so
# that a burst of load from elsewhere on this shared machine moves one round, not the result.
R=${ROUNDS:-3}
med() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
echo
echo "== no latency, $C in flight, 10,000 images of 40 KB; $R rounds, medians"
cat $(find $D -type f) >/dev/null  # into the page cache
A_IPS=""; A_RPS=""; A_US=""; W_RPS=""; W_US=""; P_IPS=""
for r in $(seq $R); do
  run_annotate $U0 $C 1 "annotate curl-multi"
  read a_ips a_rps a_us <$O/stats.json.line
  A_IPS="$A_IPS $a_ips"; A_RPS="$A_RPS $a_rps"; A_US="$A_US $a_us"
  /usr/bin/time -f "%U %S %e" -o $O/time.txt wrk -t1 -c$C -d5s -s $O/post.lua $U0/model_01 >$O/wrk.txt
  w_rps=$(awk '/^Requests\/sec/ {print $2}' $O/wrk.txt)
  w_n=$(awk '/requests in/ {print $1}' $O/wrk.txt)
  read wu ws ww <$O/time.txt
  w_us=$(python3 -c "print(f'{($wu+$ws)/$w_n*1e6:.1f}')")
  W_RPS="$W_RPS $w_rps"; W_US="$W_US $w_us"
  echo "wrk -t1 -c$C, the same $(wc -c <$O/body.json)-byte body to /model_01: $w_n requests, $w_rps requests/s; CPU $wu user + $ws sys = $w_us us per request"
  /usr/bin/python3 bench/aiohttp_client.py $D $U0 $C 2000 | tee $O/aiohttp.txt
  P_IPS="$P_IPS $(sed 's/.*: \([0-9.]*\) images\/s/\1/' $O/aiohttp.txt)"
done
python3 -c "
a_ips, a_rps, a_us, w_rps, w_us, p_ips = $(med $A_IPS), $(med $A_RPS), $(med $A_US), $(med $W_RPS), $(med $W_US), $(med $P_IPS)
print(f'medians: annotate {a_ips:.0f} images/s, {a_rps:.0f} requests/s, {a_us:.1f} us CPU per request; wrk {w_rps:.0f} requests/s, {w_us:.1f} us; aiohttp {p_ips:.0f} images/s')
print(f'ratios: annotate / wrk request rate {a_rps / w_rps:.2f} (goal 0.60); annotate / aiohttp images/s {a_ips / p_ips:.1f}x (goal 15x);')
print(f'        CPU per request: annotate {a_us:.1f} us (goal 50), wrk {w_us:.1f} us')"

echo
echo "== 20 ms latency: achieved requests/s against concurrency / latency; $R rounds, medians"
for cl in 256:1 1024:2; do
  c=${cl%:*}; l=${cl#*:}
  RPS=""
  for r in $(seq $R); do
    run_annotate $U20 $c $l "annotate curl-multi --concurrency $c --loops $l"
    read x rr u <$O/stats.json.line
    RPS="$RPS $rr"
  done
  python3 -c "r = $(med $RPS); print(f'  median {r:.0f} requests/s of {$c / 0.02:.0f}: {r / ($c / 0.02) * 100:.1f}% (goal 95%)')"
done
