#!/usr/bin/env python3
"""Reference collage with Python Pillow, for groupcast-collage-bench (scripts/bench).

Reads the layout JSON the bench writes (the photo files, the canvas size, one cell per photo,
the JPEG quality and chroma subsampling our encoder used) and does the same work as
groupcast's collage builder, written independently: decode each JPEG, honour its EXIF
orientation, scale it uniformly to cover its cell and crop centred (bilinear), paste it on the
background, encode the canvas as JPEG.

Usage: collage_reference.py LAYOUT_JSON RUNS [OUT_JPEG]
Prints, one per line: `version V`, `base_kib N` (resident memory before the work), `time_ms T`
(wall) and `cpu_ms C` (this thread's CPU time) per timed run (after one untimed warm-up), `bytes N` (output size) and
`peak_kib N` (the process's peak resident memory, VmHWM).
"""

import io
import json
import sys
import time

import PIL
from PIL import Image, ImageOps

SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def status_kib(field):
    """A memory figure of this process from /proc/self/status, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cpu_ns():
    """CPU time this thread has run (first field of /proc/thread-self/schedstat), in ns."""
    with open("/proc/thread-self/schedstat") as schedstat:
        return int(schedstat.read().split()[0])


def cell_tile(blob, width, height):
    """The photo in `blob` scaled to cover width×height and cropped centred."""
    with Image.open(io.BytesIO(blob)) as opened:
        photo = ImageOps.exif_transpose(opened)
        if photo.mode != "RGB":
            photo = photo.convert("RGB")
        scale = max(width / photo.width, height / photo.height)
        crop_w, crop_h = width / scale, height / scale
        left, top = (photo.width - crop_w) / 2, (photo.height - crop_h) / 2
        box = (left, top, left + crop_w, top + crop_h)
        return photo.resize((width, height), Image.Resampling.BILINEAR, box=box)


def build(layout, blobs):
    canvas = Image.new(
        "RGB", (layout["width"], layout["height"]), tuple(layout["background"])
    )
    for cell in layout["cells"]:
        tile = cell_tile(blobs[cell["photo"]], cell["width"], cell["height"])
        canvas.paste(tile, (cell["x"], cell["y"]))
    out = io.BytesIO()
    canvas.save(
        out,
        "JPEG",
        quality=layout["quality"],
        subsampling=SUBSAMPLING[layout["subsampling"]],
    )
    return out.getvalue()


def main():
    layout_path, runs = sys.argv[1], int(sys.argv[2])
    out_path = sys.argv[3] if len(sys.argv) > 3 else None
    with open(layout_path) as f:
        layout = json.load(f)
    blobs = []
    for path in layout["photos"]:
        with open(path, "rb") as f:
            blobs.append(f.read())
    print(f"version {PIL.__version__}")
    print(f"base_kib {status_kib('VmRSS')}")
    jpeg = build(layout, blobs)  # warm-up: plugin registration, first-touch allocations
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), cpu_ns()
        jpeg = build(layout, blobs)
        print(f"time_ms {(time.perf_counter() - start) * 1000:.3f}")
        print(f"cpu_ms {(cpu_ns() - cpu_start) / 1e6:.3f}")
    print(f"bytes {len(jpeg)}")
    if out_path:
        with open(out_path, "wb") as f:
            f.write(jpeg)
    print(f"peak_kib {status_kib('VmHWM')}")


if __name__ == "__main__":
    main()
