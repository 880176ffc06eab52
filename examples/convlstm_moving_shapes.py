"""Next-frame prediction with a ConvLSTM, streamed one frame at a time.

    python examples/convlstm_moving_shapes.py        # no arguments, numpy + lstm-infer only

Loads examples/models/moving_shapes.lstm (a two-layer ConvLSTM with a 1x1 conv head,
trained in PyTorch by examples/train_convlstm_moving_shapes.py and converted with
convert_torch), makes a fresh synthetic clip of moving squares and discs (32x32 frames),
and feeds it to `stream().step()` frame by frame: each step takes one (1, 32, 32) frame and
returns the model's prediction of the next one. Prints the per-step latency (median / p99
after warm-up), the prediction error against the copy-the-last-frame baseline, and saves
moving_shapes.png (in the current directory): actual frames on top, predictions below.
The PNG is drawn with matplotlib when installed, else written by a small numpy PNG writer.
"""
from __future__ import annotations

import os
import struct
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from moving_shapes import moving_shapes  # noqa: E402

import lstm_infer  # noqa: E402

MODEL = os.path.join(HERE, "models", "moving_shapes.lstm")
FRAMES = 200       # streamed frames (latency and error over all of them)
WARMUP = 20        # first steps left out of the latency statistics
STRIP = 10         # frames shown in the PNG
SCALE = 4          # pixels per frame pixel in the PNG


def write_png(path: str, img: np.ndarray) -> None:
    """A grey-scale image (H, W) in [0, 1] as an 8-bit PNG: signature, IHDR, one zlib IDAT
    (each row prefixed by filter type 0), IEND; every chunk with its CRC."""
    a = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in a)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def strip(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Two rows of frames (n, H, W) with 2-pixel grey gaps, upscaled SCALE times."""
    n, H, W = actual.shape
    gap = 2
    img = np.full((2 * H + 3 * gap, n * (W + gap) + gap), 0.5, np.float32)
    for k in range(n):
        x0 = gap + k * (W + gap)
        img[gap:gap + H, x0:x0 + W] = actual[k]
        img[2 * gap + H:2 * gap + 2 * H, x0:x0 + W] = predicted[k]
    return np.kron(img, np.ones((SCALE, SCALE), np.float32))


def save_strip(path: str, actual: np.ndarray, predicted: np.ndarray) -> str:
    img = strip(actual, predicted)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        write_png(path, img)
        return "numpy PNG writer"
    fig, ax = plt.subplots(figsize=(img.shape[1] / 80, img.shape[0] / 80 + 0.4), dpi=80)
    ax.imshow(img, cmap="gray", vmin=0, vmax=1)
    ax.set_title("top: actual frame t+1, bottom: predicted from frames 0..t", fontsize=9)
    ax.axis("off")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return "matplotlib"


def main() -> int:
    model = lstm_infer.load(MODEL)
    print(model)
    clip = moving_shapes(np.random.default_rng(2024), FRAMES + 1, shapes=2)   # (T, 1, 32, 32)
    stream = model.stream()
    pred = np.empty((FRAMES,) + clip.shape[1:], np.float32)
    ns = np.empty(FRAMES, np.int64)
    for t in range(FRAMES):
        t0 = time.perf_counter_ns()
        y = stream.step(clip[t])            # frame t in, prediction of frame t+1 out
        ns[t] = time.perf_counter_ns() - t0
        pred[t] = np.asarray(y).reshape(clip.shape[1:])
    us = ns[WARMUP:] / 1e3
    print(f"per-step latency over {FRAMES - WARMUP} frames: median {np.median(us):.0f} us, "
          f"p99 {np.percentile(us, 99):.0f} us (first step {ns[0] / 1e6:.1f} ms)")
    # errors from the 5th frame on (the model needs two frames to see the motion)
    mse_model = float(np.mean((pred[4:] - clip[5:]) ** 2))
    mse_copy = float(np.mean((clip[4:-1] - clip[5:]) ** 2))
    print(f"next-frame MSE: model {mse_model:.5f}, copy-last-frame baseline {mse_copy:.5f} "
          f"({mse_copy / mse_model:.1f}x lower error)")
    k = np.arange(40, 40 + STRIP)
    how = save_strip("moving_shapes.png", clip[k + 1, 0], pred[k, 0])
    print(f"saved moving_shapes.png ({how}): actual frames {k[0] + 1}..{k[-1] + 1} on top, "
          "predictions below")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
