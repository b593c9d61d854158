"""Pillow's side of make bench-prepare: the same job as bench-prepare cpu, the fastest way a
Python user has: every *.jpg of DIR read into memory first, then each opened, draft() (libjpeg's
DCT scaling to the smallest scale not below the size asked), thumbnail() (BICUBIC, reducing_gap
2.0), turned upright (ImageOps.exif_transpose) and saved as JPEG at QUALITY without its EXIF (4:2:0
chroma, Pillow's default), ROUNDS times. Prints the CPU time (time.process_time: user + sys of
every thread) and the wall time per image of the best round, and the bytes before and after.

    prepare_pillow.py DIR MAX_SIDE QUALITY ROUNDS
"""
import io
import os
import sys
import time

import PIL
from PIL import Image, ImageOps


def prepare(data, side, quality):
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (side, side))
    im.thumbnail((side, side))
    im = ImageOps.exif_transpose(im)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue(), im.size


def main():
    d, side, quality, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    files = sorted(f for f in os.listdir(d) if f.endswith(".jpg"))
    data = [open(os.path.join(d, f), "rb").read() for f in files]
    prepare(data[0], side, quality)  # warm-up
    best = None
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        out = [prepare(b, side, quality) for b in data]
        c, t = time.process_time() - c0, time.perf_counter() - t0
        if best is None or c < best[0]:
            best = (c, t, out)
    c, t, out = best
    n = len(data)
    print("Pillow %s (Python %d.%d)  %d images  CPU %.1f ms/image  wall %.1f ms/image  "
          "%.0f KB -> %.1f KB/image (%dx%d, last)  best of %d rounds"
          % (PIL.__version__, sys.version_info[0], sys.version_info[1], n, 1000 * c / n, 1000 * t / n,
             sum(map(len, data)) / 1024 / n, sum(len(o[0]) for o in out) / 1024 / n, out[-1][1][0], out[-1][1][1],
             rounds))


if __name__ == "__main__":
    main()
