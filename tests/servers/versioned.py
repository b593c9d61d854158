#!/usr/bin/env python3
"""Model servers whose answers change when a model is replaced (suite "cache_serial",
tests/e2e/test_cache.c: a stage's "version", a stage added to a finished run).

Every POST /NAME answers {"result": "NAME:" + the first 16 hex digits of SHA-256(salt(NAME) + the
body)}, where salt(NAME) is the --model NAME=SALT given for it ("" when none), or the last
POST /salt with the body NAME=SALT: another salt for a model is a new model behind the same URL.
It counts what it receives: GET /stats gives {"requests": {"/NAME": count, ...}}; POST
/stats/reset zeroes them (neither is counted).

Usage: versioned.py [--model NAME=SALT]... (127.0.0.1, a free port); prints
"listening on 127.0.0.1:P" once bound."""
import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
counts = {}
salts = {}


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
            self.answer(200, {"requests": dict(counts)})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/stats/reset":
            with lock:
                counts.clear()
            return self.answer(200, {"reset": True})
        if self.path == "/salt":
            name, _, salt = body.decode().partition("=")
            with lock:
                salts[name] = salt
            return self.answer(200, {"salt": True})
        name = self.path.lstrip("/")
        with lock:
            counts[self.path] = counts.get(self.path, 0) + 1
        with lock:
            salt = salts.get(name, "")
        digest = hashlib.sha256(salt.encode() + body).hexdigest()[:16]
        self.answer(200, {"result": name + ":" + digest})


def main():
    args = sys.argv[1:]
    for i, a in enumerate(args):
        if a == "--model" and i + 1 < len(args):
            name, _, salt = args[i + 1].partition("=")
            salts[name] = salt
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
