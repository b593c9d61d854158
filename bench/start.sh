#!/bin/sh
# make bench-start: what a process pays to start, with libvips in the plugin annotate-vips.so
# (annotate) against the same objects linked with libvips as before the plugin
# (annotate-vipslinked: libvips and its libraries in its NEEDED list, loaded at every start).
# In turns, ROUNDS rounds of each, medians in ms per process:
#   1. annotate --version (RUNS processes a round);
#   2. a run without "image": the seed chain on 4 small images against the mock (RUNS / 5);
#   3. a run with "image" on its first stage (the plugin loaded, libvips started) (RUNS / 5);
#   4. annotate --version under valgrind (memcheck, one process a round), as make valgrind pays.
# Usage: bench/start.sh BUILD [RUNS] [ROUNDS]
set -eu
B=${1:-build}
RUNS=${2:-100}
ROUNDS=${3:-5}
python3 - "$B" "$RUNS" "$ROUNDS" <<'PY'
import os, shutil, signal, statistics, subprocess, sys, tempfile, time
B, RUNS, ROUNDS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BINS = {"plugin": os.path.join(B, "annotate"), "linked": os.path.join(B, "annotate-vipslinked")}
tmp = tempfile.mkdtemp(prefix="bench-start.")
imgs = os.path.join(tmp, "imgs")
os.mkdir(imgs)
for f in ("gradient.jpg", "plasma.png", "plasma.jpg", "label.jpg"):
    shutil.copy(os.path.join("fixtures/images", f), imgs)
plain = "fixtures/pipeline.json"
image = os.path.join(tmp, "image.json")
with open(plain) as f:
    text = f.read()
with open(image, "w") as f:
    f.write(text.replace('"url": "/model_01",', '"url": "/model_01", "image": {"max_side": 64},', 1))

def per_process(cmd, n):
    t = time.perf_counter()
    for _ in range(n):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return 1000 * (time.perf_counter() - t) / n

mock = subprocess.Popen([os.path.join(B, "mock-model-server"), "--port", "0"], stdout=subprocess.PIPE, text=True)
try:
    url = "http://127.0.0.1:" + mock.stdout.readline().strip().rsplit(":", 1)[1]
    def run_cmd(a, cfg):
        return [a, imgs, "--config", cfg, "--server", url, "--out", os.path.join(tmp, "r.csv"), "--force", "--quiet"]
    cases = [("--version", lambda a: [a, "--version"], RUNS),
             ("run without \"image\"", lambda a: run_cmd(a, plain), max(1, RUNS // 5)),
             ("run with \"image\"", lambda a: run_cmd(a, image), max(1, RUNS // 5)),
             ("--version under valgrind", lambda a: ["valgrind", "-q", "--error-exitcode=99", a, "--version"], 1)]
    got = {(c[0], k): [] for c in cases for k in BINS}
    for name, cmd, n in cases:  # a warm-up of each, then the rounds in turns
        for k, a in BINS.items():
            per_process(cmd(a), 1)
        for _ in range(ROUNDS):
            for k, a in BINS.items():
                got[(name, k)].append(per_process(cmd(a), n))
finally:
    mock.send_signal(signal.SIGTERM)
    mock.wait()
    shutil.rmtree(tmp)

def needed(a):
    out = subprocess.run(["readelf", "-d", a], check=True, capture_output=True, text=True).stdout
    return sum(1 for l in out.splitlines() if "(NEEDED)" in l)

print("start of a process, ms (medians of %d rounds in turns; %d --version, %d runs a round)" % (ROUNDS, RUNS, max(1, RUNS // 5)))
print("  annotate: libvips in the plugin, NEEDED %d; annotate-vipslinked: libvips linked, NEEDED %d"
      % (needed(BINS["plugin"]), needed(BINS["linked"])))
print("%-28s %12s %12s %8s" % ("", "plugin", "linked", "ratio"))
for name, _, _ in cases:
    p, l = statistics.median(got[(name, "plugin")]), statistics.median(got[(name, "linked")])
    print("%-28s %12.1f %12.1f %8.2f" % (name, p, l, l / p))
PY
