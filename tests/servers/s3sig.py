#!/usr/bin/python3
"""An S3 endpoint that checks every request's AWS Signature Version 4 with botocore, for the tests.

    python3 tests/servers/s3sig.py --port PORT --key ID --secret SECRET [--token T]
                                   [--region R] (--upstream URL | --synthetic N)

It prints "listening on 127.0.0.1:PORT" once it serves (PORT 0: a free one), then for each
request does what S3 does before it answers:

  - no Authorization header: 403 AccessDenied; another access key: 403 InvalidAccessKeyId;
    another region in the credential scope: 400 AuthorizationHeaderMalformed (with <Region>);
    an X-Amz-Date more than 15 minutes off: 403 RequestTimeTooSkewed; no x-amz-content-sha256:
    400 InvalidRequest; an x-amz-* header or Host left out of SignedHeaders: 403 AccessDenied;
    --token given and another (or no) x-amz-security-token: 403 InvalidToken;
  - the path must be percent-encoded as botocore encodes an S3 key (quote(key, safe='/~')),
    else 400 NonCanonicalRequest (this server's own code: a client that encodes otherwise may
    still be accepted by S3, but not by these tests);
  - the signature is recomputed by botocore's own S3SigV4Auth (botocore.auth) from the request
    as it arrived: the query decoded into parameters (botocore sorts and encodes them again),
    the headers the client listed in SignedHeaders, the client's X-Amz-Date as the timestamp,
    the payload hash of the body; a different signature, or a different SignedHeaders list, is
    403 SignatureDoesNotMatch with S3's <StringToSign> and <CanonicalRequest> as botocore made
    them; an x-amz-content-sha256 other than the body's hash is 400 XAmzContentSHA256Mismatch.

A request that passes is then answered by:

  --upstream URL   the S3 server at URL (s3rver in the tests): the request is forwarded as it
                   came (but for its Authorization, checked here) and the answer relayed, so that
                   the S3 semantics the tests see are s3rver's, not this file's;
  --synthetic N    a bucket named "synth" of N objects, made up on the fly: object i (0 <= i < N)
                   has the key
                       "syn/%08d" % i + [".jpg", " space.jpg", "+plus%pct.jpg", ",comma\\"quote'.jpg",
                                          " é ü 日本.jpg", "/./dot/../seg.jpg"][i % 6]
                   (so keys sort as their numbers do) and its body is the key's UTF-8 bytes.
                   ListObjectsV2 (list-type=2, prefix, start-after, continuation-token, max-keys
                   up to 1000, encoding-type=url as AWS encodes: quote_plus(key, safe='/'));
                   GetObject; NoSuchKey; NoSuchBucket for any other bucket.

Test controls, not signed (a bucket name cannot begin with "__"):
    POST /__fault?slowdown=N   the next N signed requests get 503 SlowDown
    GET  /__stats              {"requests": ..., "verified": ..., "rejected": {CODE: n}, "last": "..."}
"""

import argparse
import base64
import bisect
import datetime
import hashlib
import http.client
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ARGS = None
LOCK = threading.Lock()
STATS = {"requests": 0, "verified": 0, "rejected": {}, "last": ""}
FAULTS = {"slowdown": 0}
SUFFIXES = [".jpg", " space.jpg", "+plus%pct.jpg", ",comma\"quote'.jpg", " é ü 日本.jpg", "/./dot/../seg.jpg"]


class S3Error(Exception):
    def __init__(self, status, code, message, extra=None):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}


def error_xml(err, resource):
    parts = ["<Code>%s</Code>" % escape(err.code), "<Message>%s</Message>" % escape(err.message),
             "<Resource>%s</Resource>" % escape(resource), "<RequestId>4442587FB7D0A2F9</RequestId>"]
    parts += ["<%s>%s</%s>" % (k, escape(v), k) for k, v in err.extra.items()]
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>").encode()


# ---- the signature ----

def parse_authorization(value):
    if not value.startswith("AWS4-HMAC-SHA256 "):
        raise S3Error(400, "InvalidArgument", "Unsupported Authorization Type")
    fields = {}
    for part in value[len("AWS4-HMAC-SHA256 "):].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    try:
        key, date, region, service, term = fields["Credential"].split("/")
        return key, date, region, service, term, fields["SignedHeaders"], fields["Signature"]
    except (KeyError, ValueError):
        raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed")


def check_clock(amz_date):
    try:
        t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    except (TypeError, ValueError):
        raise S3Error(403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    if abs((datetime.datetime.utcnow() - t).total_seconds()) > 900:
        raise S3Error(403, "RequestTimeTooSkewed",
                      "The difference between the request time and the current time is too large.")


def canonical_path(raw):
    path = urllib.parse.quote(urllib.parse.unquote_to_bytes(raw), safe="/~")
    if path != raw:
        raise S3Error(400, "NonCanonicalRequest",
                      "The path is not encoded as S3 keys are (expected %s)" % path)
    return path


def query_params(raw):
    """The query as S3 reads it: decoded name/value pairs (botocore encodes and sorts them)."""
    params = []
    for pair in raw.split("&") if raw else []:
        k, _, v = pair.partition("=")
        try:
            params.append((urllib.parse.unquote_to_bytes(k).decode(), urllib.parse.unquote_to_bytes(v).decode()))
        except UnicodeDecodeError:
            raise S3Error(400, "InvalidArgument", "A query parameter is not UTF-8")
    return params


def verify(handler, body):
    h = handler.headers
    if "Authorization" not in h:
        raise S3Error(403, "AccessDenied", "Anonymous access is forbidden for this operation")
    key, date, region, service, term, signed, signature = parse_authorization(h["Authorization"])
    if key != ARGS.key:
        raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    if region != ARGS.region or service != "s3" or term != "aws4_request":
        raise S3Error(400, "AuthorizationHeaderMalformed",
                      "The authorization header is malformed; the region '%s' is wrong; expecting '%s'"
                      % (region, ARGS.region), {"Region": ARGS.region})
    amz_date = h.get("X-Amz-Date")
    check_clock(amz_date)
    if amz_date[:8] != date:
        raise S3Error(403, "SignatureDoesNotMatch", "The credential date is not the request's date")
    if "x-amz-content-sha256" not in h:
        raise S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    names = signed.split(";")
    unsigned = [n.lower() for n in h.keys() if n.lower().startswith("x-amz-") and n.lower() not in names]
    if "host" not in names or unsigned:
        raise S3Error(403, "AccessDenied", "There were headers present in the request which were not signed: %s"
                      % ",".join(unsigned or ["host"]))
    if ARGS.token is not None and h.get("x-amz-security-token") != ARGS.token:
        raise S3Error(403, "InvalidToken", "The provided token is malformed or otherwise invalid.")
    path, _, raw_query = handler.path.partition("?")
    url = "http://%s%s" % (h["Host"], canonical_path(path))
    req = AWSRequest(method=handler.command, url=url, data=body,
                     headers={n: ",".join(h.get_all(n)) for n in names if n in h})
    req.params = query_params(raw_query)
    req.context["timestamp"] = amz_date
    auth = S3SigV4Auth(Credentials(ARGS.key, ARGS.secret, ARGS.token), "s3", ARGS.region)
    auth._modify_request_before_signing(req)
    if req.headers["X-Amz-Content-SHA256"] != h["x-amz-content-sha256"]:
        raise S3Error(400, "XAmzContentSHA256Mismatch",
                      "The provided 'x-amz-content-sha256' header does not match what was computed.")
    canonical = auth.canonical_request(req)
    to_sign = auth.string_to_sign(req, canonical)
    ours = auth.signature(to_sign, req)
    if ours != signature or auth.signed_headers(auth.headers_to_sign(req)) != signed:
        raise S3Error(403, "SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature you provided. "
                      "Check your key and signing method.",
                      {"AWSAccessKeyId": key, "StringToSign": to_sign, "CanonicalRequest": canonical})


# ---- the synthetic bucket ----

class Keys:
    """The synthetic keys, in order, as a sequence bisect can search."""

    def __len__(self):
        return ARGS.synthetic

    def __getitem__(self, i):
        return "syn/%08d%s" % (i, SUFFIXES[i % len(SUFFIXES)])


def successor(prefix):
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None


def list_page(q):
    keys = Keys()
    prefix, after = q.get("prefix", ""), q.get("start-after", "")
    lo, hi = bisect.bisect_left(keys, prefix), len(keys)
    if prefix:
        hi = bisect.bisect_left(keys, successor(prefix))
    if after:
        lo = max(lo, bisect.bisect_right(keys, after))
    if "continuation-token" in q:
        try:
            lo = max(lo, int(base64.b64decode(q["continuation-token"], validate=True)))
        except ValueError:
            raise S3Error(400, "InvalidArgument", "The continuation token provided is incorrect")
    n = min(int(q.get("max-keys", "1000")), 1000)
    url = q.get("encoding-type") == "url"
    enc = (lambda k: urllib.parse.quote_plus(k, safe="/")) if url else (lambda k: k)
    end = min(lo + n, hi)
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
           "<Name>synth</Name><Prefix>%s</Prefix>" % escape(enc(prefix)), "<KeyCount>%d</KeyCount>" % (end - lo),
           "<MaxKeys>%d</MaxKeys>" % n, "<EncodingType>url</EncodingType>" if url else "",
           "<IsTruncated>%s</IsTruncated>" % ("true" if end < hi else "false")]
    if end < hi:
        out.append("<NextContinuationToken>%s</NextContinuationToken>" % base64.b64encode(b"%d" % end).decode())
    for i in range(lo, end):
        k = keys[i]
        out.append("<Contents><Key>%s</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
                   "<ETag>&quot;%s&quot;</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>"
                   % (escape(enc(k)), hashlib.md5(k.encode()).hexdigest(), len(k.encode())))
    out.append("</ListBucketResult>")
    return "".join(out).encode()


def synthetic(handler):
    path, _, raw_query = handler.path.partition("?")
    bucket, _, key = urllib.parse.unquote_to_bytes(path[1:]).decode("utf-8", "replace").partition("/")
    if bucket != "synth":
        raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist", {"BucketName": bucket})
    if not key:
        return 200, "application/xml", list_page(dict(query_params(raw_query)))
    keys = Keys()
    i = bisect.bisect_left(keys, key)
    if i == len(keys) or keys[i] != key:
        raise S3Error(404, "NoSuchKey", "The specified key does not exist.", {"Key": key})
    return 200, "application/octet-stream", key.encode()


# ---- the server ----

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    local = threading.local()

    def log_message(self, fmt, *args):
        pass

    def send(self, status, ctype, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def control(self):
        path, _, q = self.path.partition("?")
        with LOCK:
            if path == "/__fault" and self.command == "POST":
                FAULTS["slowdown"] = int(dict(query_params(q)).get("slowdown", "0"))
            body = json.dumps(STATS).encode()
        self.send(200, "application/json", body)

    def forward(self, body):
        conn = getattr(self.local, "conn", None)
        for attempt in (0, 1):
            if conn is None:
                u = urllib.parse.urlsplit(ARGS.upstream)
                conn = self.local.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            try:
                # checked here; s3rver would also want its own access key in it
                skip = ("host", "authorization")
                conn.request(self.command, self.path, body=body or None,
                             headers={k: v for k, v in self.headers.items() if k.lower() not in skip})
                r = conn.getresponse()
                data = r.read()
                keep = [(k, v) for k, v in r.getheaders() if k.lower() in ("etag", "last-modified") or
                        k.lower().startswith("x-amz-")]
                return r.status, r.getheader("Content-Type", "application/octet-stream"), data, keep
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = self.local.conn = None
                if attempt:
                    raise

    def handle_any(self):
        if self.path.startswith("/__"):
            return self.control()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        with LOCK:
            STATS["requests"] += 1
        try:
            verify(self, body)
            with LOCK:
                STATS["verified"] += 1
                slow = FAULTS["slowdown"] > 0
                FAULTS["slowdown"] -= slow
            if slow:
                raise S3Error(503, "SlowDown", "Please reduce your request rate.")
            if ARGS.upstream:
                status, ctype, data, extra = self.forward(body)
                return self.send(status, ctype, data, extra)
            status, ctype, data = synthetic(self)
            self.send(status, ctype, data)
        except S3Error as e:
            with LOCK:
                STATS["rejected"][e.code] = STATS["rejected"].get(e.code, 0) + 1
                STATS["last"] = "%s: %s" % (e.code, e.message)
            self.send(e.status, "application/xml", error_xml(e, self.path.partition("?")[0]))

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)  # a client that hung up is no error


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--key", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--token")
    p.add_argument("--region", default="us-east-1")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--upstream")
    g.add_argument("--synthetic", type=int)
    ARGS = p.parse_args()
    srv = Server(("127.0.0.1", ARGS.port), Handler)
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
