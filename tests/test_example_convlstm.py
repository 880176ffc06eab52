"""examples/convlstm_moving_shapes.py runs with no arguments within a time limit, saves its
PNG strip, and its bundled model beats the copy-the-last-frame baseline; the example's
dependency-free PNG writer writes a PNG that decodes back to its pixels."""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "convlstm_moving_shapes.py")


def test_example_runs_and_beats_copy_baseline(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # 300 s: a cold Numba cache compiles the interpreter (~40 s on a quiet machine) first
    r = subprocess.run([sys.executable, EXAMPLE], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"next-frame MSE: model ([0-9.]+), copy-last-frame baseline ([0-9.]+)", r.stdout)
    assert m, r.stdout
    model, baseline = float(m.group(1)), float(m.group(2))
    assert model < 0.6 * baseline, r.stdout
    assert re.search(r"median \d+ us, p99 \d+ us", r.stdout)
    png = tmp_path / "moving_shapes.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_numpy_png_writer_round_trip(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        from convlstm_moving_shapes import write_png
    finally:
        sys.path.pop(0)
    img = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    path = str(tmp_path / "x.png")
    write_png(path, img)
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        pos += 12 + n
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (w, h, depth, colour) == (5, 7, 8, 0)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(7, 6)
    assert (raw[:, 0] == 0).all()
    np.testing.assert_array_equal(raw[:, 1:], (img * 255 + 0.5).astype(np.uint8))
