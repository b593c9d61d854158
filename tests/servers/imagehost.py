#!/usr/bin/python3
"""An image host for the tests: Python's http.server serving a folder's files by GET, and saying
which request headers it was sent.

    python3 tests/servers/imagehost.py DIR

It binds 127.0.0.1 on a free port and prints "listening on 127.0.0.1:PORT" once it serves
(what tests/helpers/proc.c's listener_start waits for). GET /NAME answers the file DIR/NAME
(404 when there is none), as http.server's SimpleHTTPRequestHandler does. Test controls:

    POST /__fault?busy=N   the next N image requests get 503 with Retry-After: 0
    GET  /__moved/NAME     302 to /NAME, with a body of 4096 bytes (its own Content-Length)
    GET  /__stats          {"requests": image requests, "authorization": those that carried an
                            Authorization header, "busy": 503s answered, "moved": 302s}

SIGTERM stops it.
"""

import functools
import json
import signal
import sys
import threading
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {"requests": 0, "authorization": 0, "busy": 0, "moved": 0}
MOVED = "/__moved/"
FAULTS = {"busy": 0}


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer_json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if url.path != "/__fault":
            self.send_error(404)
            return
        q = urllib.parse.parse_qs(url.query)
        with LOCK:
            FAULTS["busy"] = int(q.get("busy", ["0"])[0])
        self.answer_json(FAULTS)

    def do_GET(self):
        if self.path == "/__stats":
            with LOCK:
                self.answer_json(STATS)
            return
        if self.path.startswith(MOVED):
            with LOCK:
                STATS["moved"] += 1
            body = b"m" * 4096
            self.send_response(302)
            self.send_header("Location", "/" + self.path[len(MOVED):])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with LOCK:
            STATS["requests"] += 1
            if self.headers.get("Authorization") is not None:
                STATS["authorization"] += 1
            busy = FAULTS["busy"] > 0
            if busy:
                FAULTS["busy"] -= 1
                STATS["busy"] += 1
        if busy:
            body = b"busy"
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: imagehost.py DIR\n")
        sys.exit(2)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
