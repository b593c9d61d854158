#!/usr/bin/env python3
"""Model servers of a real folder's failures (suite "cells", tests/e2e/test_cells.c): corrupt
images refused with a permanent 400 by some stages and not others, one that a stage answers 503
until it is healed, and string results to write as plain text.

Every POST /NAME takes {"img": "<base64>"} (or, for /summary, {"o": <a string>}). For the image's
bytes B, K = "%08x" % zlib.crc32(B):
  /ocr      {"text": "T" + K, "lang": "en"}; 400 {"error": "cannot identify image file"} when B
            holds b"CORRUPT"; 503 {"error": "overloaded"} when B holds b"FLAKY", until POST /heal
  /caption  {"caption": 'A photo, "K"', "tokens": 3}; 400 {"error": "bad image"} for CORRUPT
  /tag      {"result": ["t", K]} for every image, corrupt ones too
  /summary  {"result": "sum:" + o}
  /detect   {"detections": [{"bbox": [0, 0, 4, 4], "label": "L" + K, "score": 0.5},
                            {"bbox": [4, 4, 4, 4], "label": "M" + K, "score": 0.25}], "model": "det-1"}
  /species  (a crop) {"label": "S" + K, "score": len(B)}
  /echo     {"boxes": X} answered {"result": X}: what a later stage was sent
GET /stats gives {"requests": {"/NAME": count, ...}}; POST /heal makes FLAKY images answer like
the others (neither is counted).

Usage: cells.py (127.0.0.1, a free port); prints "listening on 127.0.0.1:P" once bound."""
import base64
import json
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
counts = {}
healed = [False]


def answer_for(path, req):
    if path == "/summary":
        return 200, {"result": "sum:" + req["o"]}
    if path == "/echo":
        return 200, {"result": req["boxes"]}
    data = base64.b64decode(req["img"], validate=True)
    key = "%08x" % zlib.crc32(data)
    corrupt = b"CORRUPT" in data
    if path == "/ocr":
        if corrupt:
            return 400, {"error": "cannot identify image file"}
        if b"FLAKY" in data and not healed[0]:
            return 503, {"error": "overloaded"}
        return 200, {"text": "T" + key, "lang": "en"}
    if path == "/caption":
        if corrupt:
            return 400, {"error": "bad image"}
        return 200, {"caption": 'A photo, "%s"' % key, "tokens": 3}
    if path == "/tag":
        return 200, {"result": ["t", key]}
    if path == "/detect":
        return 200, {"detections": [{"bbox": [0, 0, 4, 4], "label": "L" + key, "score": 0.5},
                                    {"bbox": [4, 4, 4, 4], "label": "M" + key, "score": 0.25}],
                     "model": "det-1"}
    if path == "/species":
        return 200, {"label": "S" + key, "score": len(data)}
    return 404, {"error": "no such model"}


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
        if self.path == "/heal":
            healed[0] = True
            return self.answer(200, {"healed": True})
        with lock:
            counts[self.path] = counts.get(self.path, 0) + 1
        try:
            status, obj = answer_for(self.path, json.loads(body))
        except (ValueError, KeyError, TypeError) as e:
            status, obj = 400, {"error": "bad request: %s" % e}
        self.answer(status, obj)


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
