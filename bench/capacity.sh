#!/bin/sh
# make bench-capacity: the concurrency limits against a mock that behaves like a GPU server
# (docs/BENCHMARKS.md, "Each endpoint at its own capacity"). Every endpoint serves K requests
# at once, 50 ms each, queues at most Q more and answers 503 beyond; fixed totals against
# --concurrency auto, which is not told K; then batches of 16 against a server whose request costs
# 50 ms + 2 ms per image, against the same server unbatched. The data set (30,000 PNG files of 2 KB) is made under
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
echo
echo "== batches: capacity 4, queue 4, 50 ms + 2 ms per image; \"batch\": {\"size\": 16} on every stage against"
echo "   the same server unbatched (curl-multi, --concurrency auto; the mock is started here, with --batch all"
echo "   for the batched run, since a batch endpoint answers lists)"
python3 - "$A" "$D" <<'PY'
import json, os, signal, subprocess, sys
A, D = sys.argv[1], sys.argv[2]
mock = os.path.join(os.path.dirname(A), "mock-model-server")
seed = json.load(open("fixtures/pipeline.json"))
batched = json.loads(json.dumps(seed))
for s in batched["stages"]:
    s["batch"] = {"size": 16, "max_wait_ms": 20}
json.dump(batched, open("out/bench-batch-16.json", "w"), indent=1)
rates = {}
for name, extra, cfg in (("unbatched", [], "fixtures/pipeline.json"), ("batch 16", ["--batch", "all"], "out/bench-batch-16.json")):
    m = subprocess.Popen([mock, "--port", "0", "--capacity", "4", "--queue-max", "4", "--latency-ms", "50",
                          "--per-item-ms", "2"] + extra, stdout=subprocess.PIPE, text=True)
    try:
        port = m.stdout.readline().strip().rsplit(":", 1)[1]
        rep = "out/bench-batch-%s.json" % name.replace(" ", "")
        subprocess.run([A, "bench", D, "--server", "http://127.0.0.1:" + port, "--config", cfg, "--concurrency", "auto",
                        "--strategies", "curl-multi", "--duration", "20", "--report", rep,
                        "--chart", rep.replace(".json", ".svg")], check=True)
        p = json.load(open(rep))["points"][0]
        rates[name] = p["images_per_s"]
        print("%-10s %7.0f images/s, %d failed, %.1f%% retries, request p99 %.0f ms" % (
            name, p["images_per_s"], p["images_failed"], 100.0 * p["retries"] / max(p["attempts"], 1),
            p["request_p99_ms"]))
    finally:
        m.send_signal(signal.SIGTERM)
        m.wait()
bound = 4 / 0.052
print("unbatched bound of one endpoint: 4 / 52 ms = %.0f images/s; batch 16: %.1fx the unbatched bound, %.1fx the unbatched run"
      % (bound, rates["batch 16"] / bound, rates["batch 16"] / max(rates["unbatched"], 1e-9)))
PY
