#!/usr/bin/env python3
"""A batch endpoint with the faults the batching tests need (suite "batch", tests/e2e/test_batch.c).

Requests are TF Serving style: {"instances": [{"name": N, "b64": B}, ...]}. Every endpoint
answers {"predictions": [...]}, one element per instance, {"name": N, "len": len(B)}, except:
  POST /perr   an instance whose name starts with "bad" gets {"error": "refused N"} instead;
  POST /whole  a batch holding such an instance is answered 400 as a whole;
  POST /poison a request holding such an instance is answered 500 as a whole, every time;
  POST /drop   such an instance's prediction is left out (a wrong count for its batch);
  POST /count  one prediction too many, always;
  POST /big/P  each prediction also has "pad": P x's (10 P for such an instance);
  POST /late404 a request holding such an instance is answered 404 at once, the others after
               300 ms (a server whose first answer is about one image).
GET /stats gives {"requests": R, "items": I, "sizes": [batch sizes seen, in order]}.

Usage: batchy.py --port P (127.0.0.1); prints "listening on 127.0.0.1:P" once bound."""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
stats = {"requests": 0, "items": 0, "sizes": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            self.answer(200, stats)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        try:
            inst = json.loads(self.rfile.read(n))["instances"]
        except (ValueError, KeyError, TypeError):
            return self.answer(400, {"error": "not {\"instances\": [...]}"})
        with lock:
            stats["requests"] += 1
            stats["items"] += len(inst)
            stats["sizes"].append(len(inst))
        bad = [i for i in inst if str(i.get("name", "")).startswith("bad")]
        if self.path == "/whole" and bad:
            return self.answer(400, {"error": "refused " + bad[0]["name"]})
        if self.path == "/late404":
            if bad:
                return self.answer(404, {"error": "no model for " + bad[0]["name"]})
            time.sleep(0.3)
        if self.path == "/poison" and bad:
            return self.answer(500, {"error": "cannot process " + bad[0]["name"]})
        pad = int(self.path[5:]) if self.path.startswith("/big/") else 0
        preds = []
        for i in inst:
            name = str(i.get("name", ""))
            if self.path == "/perr" and i in bad:
                preds.append({"error": "refused " + i["name"]})
            elif self.path == "/drop" and i in bad:
                continue
            elif pad:
                preds.append({"name": name, "len": len(i["b64"]),
                              "pad": "x" * (pad * 10 if i in bad else pad)})
            else:
                preds.append({"name": i["name"], "len": len(i["b64"])})
        if self.path == "/count":
            preds.append({"name": "extra", "len": 0})
        self.answer(200, {"predictions": preds})


def main():
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
