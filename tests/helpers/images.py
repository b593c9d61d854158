"""Test and benchmark images for image preparation (src/prepare/), made with Pillow.

    images.py tests DIR            the images of suite "prepare" (tests/unit/test_prepare.c)
    images.py camera DIR N [W H]   N camera-like JPEGs (default 4000 x 3000) for make bench-prepare
    images.py variants SRC DIR     SRC (a camera JPEG) as a progressive JPEG, PNG, WebP, TIFF and
                                   HEIC, for bench-prepare's memory estimates

Every image of "tests" is defined by a formula the C test computes too:

  quad_oK.jpg (K = 1..8)   upright, 64 x 48: four quadrants, top left red, top right green, bottom
                           left blue, bottom right white; stored turned so that EXIF orientation K
                           shows it upright (as Pillow's ImageOps.exif_transpose does), with an EXIF
                           block holding Orientation K, a camera make and a GPS position.
  coord_oK.png             upright, 300 x 200, each pixel's colour its coordinates:
                           R = x % 256, G = y % 256, B = 16 * (x // 256) + (y // 256); stored
                           turned for orientation K (PNG eXIf chunk), lossless.
  coord.webp               coord_o1's pixels, lossless WebP, orientation 6 in its EXIF.
  coord.tif, coord.gif     coord_o1's pixels as TIFF, and as GIF (a 216-colour palette: the test
                           reads a GIF's pixels from Pillow's own decoding, coord_gif.png).
  quad.heic                quad_o1's upright pixels, HEIC (heif-enc from libheif-examples).
  big_o6.jpg               1600 x 1200 upright, stored for orientation 6: a horizontal ramp,
                           R = 255 * x / 1599, G = 255 * y / 1199, B = 128.
  alpha.png                40 x 30 RGBA: the left half opaque red, the right half transparent.
  grey16.png               30 x 20 16-bit grey, value 257 * (x + y).
  cmyk.jpg                 16 x 16 CMYK, 0 % cyan, 100 % magenta, 100 % yellow, 0 % black (red).
  trunc.jpg, trunc.png     big_o6.jpg and coord_o1.png cut in half.
  crc.png                  coord_o1.png with a byte of its image data changed (its CRC fails).
  junk.bin                 1000 random bytes; empty.jpg: no bytes at all.
  drawing.svg              an SVG (a format libvips reads, but annotate does not).
  bomb.png                 a 200-byte PNG whose header says 50000 x 50000 RGB pixels.
"""
import io
import os
import random
import struct
import subprocess
import sys
import zlib

from PIL import Image, ImageDraw, ImageFilter

# How each EXIF orientation's stored image is made from the upright one (the inverse of
# ImageOps.exif_transpose's step for that orientation).
STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def exif(orientation, gps=True):
    e = Image.Exif()
    e[0x0112] = orientation
    e[0x010F] = "TestCam"
    e[0x0110] = "Model 7"
    if gps:
        e[0x8825] = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)}
    return e.tobytes()


def stored(upright, orientation):
    how = STORE[orientation]
    return upright if how is None else upright.transpose(how)


def quad():
    im = Image.new("RGB", (64, 48))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 31, 23), fill=(255, 0, 0))
    d.rectangle((32, 0, 63, 23), fill=(0, 255, 0))
    d.rectangle((0, 24, 31, 47), fill=(0, 0, 255))
    d.rectangle((32, 24, 63, 47), fill=(255, 255, 255))
    return im


def coord(w=300, h=200):
    data = bytearray()
    for y in range(h):
        for x in range(w):
            data += bytes((x % 256, y % 256, 16 * (x // 256) + (y // 256)))
    return Image.frombytes("RGB", (w, h), bytes(data))


def ramp(w, h):
    data = bytearray()
    for y in range(h):
        g = 255 * y // (h - 1)
        data += b"".join(bytes((255 * x // (w - 1), g, 128)) for x in range(w))
    return Image.frombytes("RGB", (w, h), bytes(data))


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb():
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * 50000) * 2, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def tests(out):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)
    for o in range(1, 9):
        stored(quad(), o).save(p("quad_o%d.jpg" % o), quality=95, exif=exif(o))
        stored(coord(), o).save(p("coord_o%d.png" % o), exif=exif(o))
    c = coord()
    c.save(p("coord.webp"), lossless=True, exif=exif(6, gps=False))
    c.save(p("coord.tif"))
    g = c.convert("P", palette=Image.Palette.WEB)
    g.save(p("coord.gif"))
    g.convert("RGB").save(p("coord_gif.png"))
    quad().save(p("quad.png"))
    subprocess.run(["heif-enc", "-q", "95", "-o", p("quad.heic"), p("quad.png")], check=True,
                   stdout=subprocess.DEVNULL)
    stored(ramp(1600, 1200), 6).save(p("big_o6.jpg"), quality=95, exif=exif(6))
    a = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    ImageDraw.Draw(a).rectangle((0, 0, 19, 29), fill=(255, 0, 0, 255))
    a.save(p("alpha.png"))
    g16 = Image.new("I;16", (30, 20))
    g16.putdata([257 * (x + y) for y in range(20) for x in range(30)])
    g16.save(p("grey16.png"))
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p("cmyk.jpg"), quality=95)
    for src, dst in (("big_o6.jpg", "trunc.jpg"), ("coord_o1.png", "trunc.png")):
        data = open(p(src), "rb").read()
        open(p(dst), "wb").write(data[: len(data) // 2])
    data = bytearray(open(p("coord_o1.png"), "rb").read())
    data[data.index(b"IDAT") + 200] ^= 0xFF
    open(p("crc.png"), "wb").write(bytes(data))
    open(p("junk.bin"), "wb").write(bytes(random.Random(7).randrange(256) for _ in range(1000)))
    open(p("empty.jpg"), "wb").close()
    open(p("drawing.svg"), "w").write('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    open(p("bomb.png"), "wb").write(bomb())


def camera(out, n, w, h):
    """Photo-like content (smooth shapes, texture, sensor noise) at about 3 MB a 12 MP JPEG,
    each with a camera's EXIF block: orientation 1, 6, 8 or 3 in turn, and a GPS position."""
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(12)
    for i in range(n):
        im = Image.linear_gradient("L").resize((w, h)).convert("RGB")
        d = ImageDraw.Draw(im)
        for _ in range(60):
            x, y = rnd.randrange(w), rnd.randrange(h)
            r = rnd.randrange(w // 40, w // 6)
            d.ellipse((x - r, y - r // 2, x + r, y + r // 2),
                      fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
        im = im.filter(ImageFilter.GaussianBlur(6))
        noise = Image.effect_noise((w, h), 24).convert("RGB")
        im = Image.blend(im, noise, 0.18)
        e = Image.Exif()
        e.update({0x0112: (1, 6, 8, 3)[i % 4], 0x010F: "TestCam", 0x0110: "Model 7",
                  0x0132: "2024:05:01 12:00:00"})
        e[0x8825] = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)}
        im.save(os.path.join(out, "photo%03d.jpg" % i), quality=92, exif=e.tobytes())


def variants(src, out):
    os.makedirs(out, exist_ok=True)
    im = Image.open(src)
    exif_block = im.info.get("exif", b"")
    p = lambda name: os.path.join(out, name)
    im.save(p("baseline.jpg"), quality=92, exif=exif_block)
    im.save(p("progressive.jpg"), quality=92, progressive=True, exif=exif_block)
    im.save(p("photo.png"), exif=exif_block)
    im.save(p("photo.webp"), quality=90, exif=exif_block)
    im.save(p("photo.tif"))
    subprocess.run(["heif-enc", "-q", "80", "-o", p("photo.heic"), p("photo.png")], check=True,
                   stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "tests":
        tests(sys.argv[2])
    elif len(sys.argv) in (4, 6) and sys.argv[1] == "camera":
        w, h = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) == 6 else (4000, 3000)
        camera(sys.argv[2], int(sys.argv[3]), w, h)
    elif len(sys.argv) == 4 and sys.argv[1] == "variants":
        variants(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
