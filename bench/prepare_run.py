#!/usr/bin/env python3
"""make bench-prepare, parts 5 and 6: whole annotate runs against a Pillow model server
(tests/servers/prepsrv.py, threaded, on 127.0.0.1), each run timed and its bytes counted by the
server.

  prepare_run.py throughput ANNOTATE DIR
      DIR's camera JPEGs through three stages that take the image and do a classifier's
      preprocessing in Pillow (POST /classify): once sending the files as stored, once with
      "image": {"max_side": 1024} on each stage (one prepared copy, shared). Prints images/s and
      request bytes per image of both, and the ratios.
  prepare_run.py memory ANNOTATE DIR BUDGET
      DIR's photos (8000 x 6000) through a detector at 1024 px and a crop stage cutting four boxes
      at 224 px, with --max-memory BUDGET, under every strategy. Prints the peak RSS of the
      largest annotate process of each run (the parent, or a worker process), from
      getrusage(RUSAGE_CHILDREN) of a fresh child per run."""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request

PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else "python3"


def start_server():
    p = subprocess.Popen([PY, "tests/servers/prepsrv.py", "--threads"], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening on "):
        p.kill()
        sys.exit("prepsrv.py did not start")
    return p, "http://" + line.split()[2]


def server_stats(base):
    with urllib.request.urlopen(base + "/stats") as r:
        return json.load(r)


def run(annotate, folder, base, stages, extra, tmp):
    cfg = os.path.join(tmp, "p.json")
    with open(cfg, "w") as f:
        json.dump({"stages": stages}, f)
    out = os.path.join(tmp, "r.csv")
    before = server_stats(base)
    t0 = time.monotonic()
    rc = subprocess.run([annotate, folder, "--config", cfg, "--server", base, "--out", out, "--force", "--quiet"] + extra,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    after = server_stats(base)
    with open(out) as f:
        rows = f.read().count("\n") - 1
    ok = sum(1 for line in open(out) if ",ok," in line)
    if rc.returncode != 0 or ok != rows:
        print("   run failed (exit %d, %d of %d rows ok): %s" % (rc.returncode, ok, rows, rc.stderr.strip()[-300:]))
    return wall, after["bytes"] - before["bytes"], rows


def throughput(annotate, folder):
    n = len([f for f in os.listdir(folder) if f.endswith(".jpg")])
    srv, base = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {}
            for name, image in (("as stored", None), ("prepared", {"max_side": 1024})):
                stages = []
                for k in range(3):
                    st = {"name": "model_%d" % (k + 1), "url": "/classify"}
                    if image:
                        st["image"] = image
                    stages.append(st)
                wall, nbytes, rows = run(annotate, folder, base, stages, ["--concurrency", "8"], tmp)
                results[name] = (rows / wall, nbytes / max(rows, 1))
                print("%-10s %d images, 3 stages: %6.2f images/s, %8.1f KB on the wire per image (%.1f s)"
                      % (name, rows, rows / wall, nbytes / max(rows, 1) / 1e3, wall))
            a, b = results["as stored"], results["prepared"]
            print("prepared against as stored: %.1fx the images/s, %.1fx fewer bytes (%d photos of 12 MP)"
                  % (b[0] / a[0], a[1] / b[1], n))
    finally:
        srv.terminate()
        srv.wait()


STRATEGIES = ["serial", "threads", "processes", "curl-multi", "load=processes,query=curl-multi",
              "load=threads,query=processes"]


def memory(annotate, folder, budget):
    srv, base = start_server()
    stages = [
        {"name": "detect", "url": "/detect", "image": {"max_side": 1024},
         "fields": {"boxes": [[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.3, 0.3], [0, 0, 1, 1], [0.6, 0.1, 0.3, 0.6]]},
         "csv": False},
        {"name": "crop", "url": "/look", "input": {"each": "detect", "crop": ".boxes[]", "normalized": True},
         "image": {"size": [224, 224], "fit": "cover"}},
    ]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for s in STRATEGIES:
                # A fresh child per run, so that its RUSAGE_CHILDREN holds this run's peak alone.
                code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:]); "
                        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
                cfg = os.path.join(tmp, "p.json")
                with open(cfg, "w") as f:
                    json.dump({"stages": stages}, f)
                out = os.path.join(tmp, "r.csv")
                t0 = time.monotonic()
                r = subprocess.run([PY, "-c", code, annotate, folder, "--config", cfg, "--server", base, "--out", out,
                                    "--force", "--quiet", "--max-memory", str(budget), "--strategy", s, "--workers", "4"],
                                   capture_output=True, text=True)
                wall = time.monotonic() - t0
                ok = sum(1 for line in open(out) if ",ok," in line)
                rows = open(out).read().count("\n") - 1
                peak = int(r.stdout.strip().splitlines()[-1]) / 1024
                print("%-32s %d photos, %d ok, budget %d MB: peak RSS %4.0f MB%s (%.1f s)"
                      % (s, rows, ok, budget // 1000000, peak, "" if peak < 300 else "  OVER 300 MB", wall))
    finally:
        srv.terminate()
        srv.wait()


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "throughput":
        throughput(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 5 and sys.argv[1] == "memory":
        memory(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
