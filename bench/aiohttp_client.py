#!/usr/bin/python3
"""The seed chain written the way a Python user would with asyncio + aiohttp: one session, a
semaphore of 64 requests in flight, every image read and base64-encoded, model_01 and model_02
together, then model_03, model_04 and one model_05 per sub-image. Prints images, seconds and
images/s (make bench-cost, bench/cost.sh).

usage: aiohttp_client.py DIR BASE_URL [CONCURRENCY [LIMIT]]"""
import asyncio
import base64
import os
import sys
import time

import aiohttp


def truthy(v):
    return bool(v)


async def main():
    root, base = sys.argv[1], sys.argv[2].rstrip("/")
    conc = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    paths = []
    for d, _, files in os.walk(root):
        paths.extend(os.path.join(d, f) for f in files)
    paths.sort()
    if limit:
        paths = paths[:limit]
    sem = asyncio.Semaphore(conc)
    rows = []

    async def post(session, model, body):
        async with sem:
            async with session.post(f"{base}/{model}", json=body) as r:
                r.raise_for_status()
                return (await r.json())["result"]

    async def one(session, path):
        with open(path, "rb") as f:
            im = base64.b64encode(f.read()).decode()
        body = [{"im_str": im, "model_03": None}]
        r1, r2 = await asyncio.gather(post(session, "model_01", body), post(session, "model_02", body))
        row = [path, r1, r2, None, []]
        if truthy(r1) and truthy(r2):
            r3 = await post(session, "model_03", body)
            r4 = await post(session, "model_04", [{"im_str": im, "model_03": r3}])
            subs = r4.get("sub-img", []) if isinstance(r4, dict) else []
            r5 = await asyncio.gather(*(post(session, "model_05", [{"im_str": s["img"], "model_03": None}])
                                        for s in subs))
            row[3], row[4] = r3, r5
        rows.append(row)

    t0 = time.monotonic()
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(one(session, p) for p in paths))
    dt = time.monotonic() - t0
    print(f"aiohttp: {len(rows)} images in {dt:.2f} s: {len(rows) / dt:.1f} images/s")


asyncio.run(main())
