#!/usr/bin/python3
"""A server that gives back the secrets it is sent (suite "secrets", tests/e2e/test_secrets.c):
each answer is one way a real server puts a credential into text annotate writes.

    python3 tests/servers/leaky.py [--token-file F] [--rotate-after N] [--echo VALUE]
                                   [--hold-after N --release-file F]

It binds 127.0.0.1 on a free port and prints "listening on 127.0.0.1:PORT" once it serves
(what tests/helpers/proc.c's listener_start waits for). SIGTERM stops it. What it answers:

    POST /echo/STATUS...   STATUS, with {"error":"denied","auth":AUTHORIZATION,"key":X-API-KEY}
                           (a 401 page that echoes the Authorization header); the values start
                           within the body's first 80 bytes
    POST /pad/STATUS...    STATUS, with the Authorization value starting at byte 65 of the body,
                           so that its credentials ("Bearer " is 7 bytes) start at byte 72 and
                           straddle an excerpt cut at 80 bytes
    POST /said...          200 {"error": "refused: AUTHORIZATION"} (for a stage whose "error"
                           expression reads .error: the message is the row's reason as it is);
                           with --hold-after N --release-file F, the (N+1)th such request is
                           answered only once F exists
    POST /redirect...      301 to https://HOST/redirect... (nginx's http->https redirect,
                           "return 301 https://$host$request_uri": the query string comes back)
    POST /rotate...        a token that rotates: a request whose Authorization is "Bearer T",
                           T the token file's content at start, answers 400 echoing it, until
                           the --rotate-after'th such request, which writes a new token to the
                           file and answers 401; from then on the new token is the one
                           answered 400 with its echo, any other 401 with its echo
    GET  /img-redirect     302 to http://X-IMAGE-TOKEN.invalid/x.png (an image host whose
                           redirect names the header it was sent: curl says it cannot resolve
                           that host)
    GET  anything else     403 with an S3 error document whose Message holds the request's SigV4
                           signature (from its Authorization), VALUE (--echo: a store that says
                           the secret key it was configured with) and its x-amz-security-token
"""

import argparse
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"token": None, "seen": 0, "said": 0}
ARGS = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json", location=None):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(data)

    def echo(self, status, auth):
        self.send(status, json.dumps({"error": "denied", "auth": auth, "key": self.headers.get("X-Api-Key", "")}))

    def rotate(self, auth):
        with LOCK:
            if STATE["token"] is None or auth != "Bearer " + STATE["token"]:
                return 401
            STATE["seen"] += 1
            if STATE["seen"] != ARGS.rotate_after:
                return 400
            STATE["token"] = "rotated" + secrets.token_hex(12)
            tmp = ARGS.token_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(STATE["token"] + "\n")
            os.replace(tmp, ARGS.token_file)
            return 401

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        auth = self.headers.get("Authorization", "")
        path = self.path
        if path.startswith("/echo/"):
            return self.echo(int(path[6:9]), auth)
        if path.startswith("/pad/"):
            head = '{"error":"denied","pad":"'
            body = head + "x" * (65 - len(head) - len('","auth":"')) + '","auth":"' + auth + '"}'
            return self.send(int(path[5:8]), body)
        if path.startswith("/said"):
            with LOCK:
                STATE["said"] += 1
                held = STATE["said"] == ARGS.hold_after + 1
            while held and not os.path.exists(ARGS.release_file):
                time.sleep(0.02)
            return self.send(200, json.dumps({"error": "refused: " + auth}))
        if path.startswith("/redirect"):
            return self.send(301, "<html>301 Moved Permanently</html>", "text/html",
                             "https://" + self.headers.get("Host", "") + path)
        if path.startswith("/rotate"):
            return self.echo(self.rotate(auth), auth)
        self.send(404, "{}")

    def do_GET(self):
        if self.path.startswith("/img-redirect"):
            host = self.headers.get("X-Image-Token", "none")
            return self.send(302, "", "text/plain", "http://" + host + ".invalid/x.png")
        auth = self.headers.get("Authorization", "")
        sig = auth[auth.find("Signature=") + 10:] if "Signature=" in auth else "none"
        said = " ".join(["signature", sig, "secret", ARGS.echo or "", "token",
                         self.headers.get("x-amz-security-token", "")])
        doc = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access denied "
               "for " + said.replace("&", "&amp;").replace("<", "&lt;") + "</Message></Error>")
        self.send(403, doc, "application/xml")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--token-file")
    ap.add_argument("--rotate-after", type=int, default=0)
    ap.add_argument("--echo")
    ap.add_argument("--hold-after", type=int, default=-1)
    ap.add_argument("--release-file")
    ARGS = ap.parse_args()
    if ARGS.token_file:
        with open(ARGS.token_file) as f:
            STATE["token"] = f.read().strip()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
