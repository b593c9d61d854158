#!/usr/bin/env python3
"""A model server that looks at the images it is sent, with Pillow, the way a Python model server
does: Image.open and nothing else (no EXIF transpose). For the tests of prepared images (suite
"prepare_run", tests/e2e/test_prepare_run.c) and the end-to-end benchmark (make bench-prepare).

Every endpoint takes the seed's body, [{"im_str": BASE64, ...fields}], or a batch of such items,
and answers {"result": R} (with "?batch" after the path: {"result": [R, ...]}, one per item),
where the image is the decoded im_str:

  POST /look     R = {"w", "h", "format": Pillow's, "exif": 1 when it carries EXIF, "gps": 1 when
                 that EXIF holds a GPS position, "bytes": its length, "quad": the colour nearest
                 to each quadrant's centre, top left, top right, bottom left, bottom right, as
                 four of R G B W K ("RGBW" is the test image quad upright), "tl", "br": the RGB
                 of the top-left and bottom-right pixels, "fields": the item's other fields}
  POST /detect   R = {"w", "h", "boxes": the item's "boxes" field as it was sent}: a detector
                 whose boxes the test chooses
  POST /classify a classifier's preprocessing as torchvision's transforms do it on a PIL image
                 (decode, convert to RGB, resize to 224 x 224 with bicubic, scale to floats):
                 R = {"w", "h", "mean": the mean of the floats}
  GET /stats     {"requests": R, "bytes": request bytes received, "items": images seen}

Usage: prepsrv.py [--port P] [--threads]; binds 127.0.0.1 and prints "listening on 127.0.0.1:P"
once bound. Without --threads one request is served at a time, as a single Python worker does."""
import base64
import io
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

from PIL import Image

lock = threading.Lock()
stats = {"requests": 0, "bytes": 0, "items": 0}

COLOURS = {"R": (255, 0, 0), "G": (0, 255, 0), "B": (0, 0, 255), "W": (255, 255, 255), "K": (0, 0, 0)}


def nearest(px):
    px = px[:3] if isinstance(px, tuple) else (px, px, px)
    return min(COLOURS, key=lambda k: sum((a - b) ** 2 for a, b in zip(px, COLOURS[k])))


def look(im, data, item):
    exif = im.getexif()
    rgb = im.convert("RGB")
    w, h = im.size
    quad = "".join(nearest(rgb.getpixel((x, y))) for x, y in
                   ((w // 4, h // 4), (3 * w // 4, h // 4), (w // 4, 3 * h // 4), (3 * w // 4, 3 * h // 4)))
    return {"w": w, "h": h, "format": im.format, "exif": int(len(exif) > 0), "gps": int(0x8825 in exif),
            "bytes": len(data), "quad": quad, "tl": list(rgb.getpixel((0, 0))),
            "br": list(rgb.getpixel((w - 1, h - 1))),
            "fields": {k: v for k, v in item.items() if k != "im_str"}}


def classify(im):
    x = im.convert("RGB").resize((224, 224), Image.BICUBIC)
    data = x.tobytes()
    return {"w": im.size[0], "h": im.size[1], "mean": round(sum(data) / len(data) / 255.0, 4)}


def one(path, item):
    data = base64.b64decode(item["im_str"], validate=True)
    im = Image.open(io.BytesIO(data))
    if path == "/look":
        return look(im, data, item)
    if path == "/detect":
        return {"w": im.size[0], "h": im.size[1], "boxes": item.get("boxes", [])}
    return classify(im)


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
        body = self.rfile.read(n)
        try:
            items = json.loads(body)
            results = [one(self.path.split("?")[0], item) for item in items]
        except Exception as e:  # a bad image is the client's fault: 400 with why
            return self.answer(400, {"error": "%s: %s" % (type(e).__name__, e)})
        with lock:
            stats["requests"] += 1
            stats["bytes"] += n
            stats["items"] += len(items)
        self.answer(200, {"result": results if self.path.endswith("?batch") else results[0]})


def main():
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
    cls = ThreadingHTTPServer if "--threads" in sys.argv else HTTPServer
    srv = cls(("127.0.0.1", port), Handler)
    print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
