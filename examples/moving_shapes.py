"""Synthetic video for the ConvLSTM examples: squares and discs moving in straight lines and
bouncing off the walls of a small grey-scale frame (numpy only)."""
from __future__ import annotations

import numpy as np

SIZE = 32  # frames are (1, SIZE, SIZE), values in [0, 1]


def moving_shapes(rng: np.random.Generator, frames: int, size: int = SIZE,
                  shapes: int = 2) -> np.ndarray:
    """One sequence (frames, 1, size, size) float32: `shapes` squares or discs (half-size 3 to
    5 pixels), each with its own velocity (1 to 2.5 pixels per frame along each axis),
    reflected at the frame's edges; overlapping shapes add up (clipped to 1)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((frames, 1, size, size), np.float32)
    for _ in range(shapes):
        r = rng.uniform(3, 5)
        pos = rng.uniform(r, size - 1 - r, size=2)
        vel = rng.uniform(1, 2.5, size=2) * rng.choice([-1, 1], size=2)
        disc = rng.random() < 0.5
        for t in range(frames):
            dy, dx = yy - pos[0], xx - pos[1]
            if disc:   # soft edge: one pixel of anti-aliasing
                img = np.clip(r + 0.5 - np.sqrt(dy * dy + dx * dx), 0, 1)
            else:
                img = np.clip(r + 0.5 - np.maximum(np.abs(dy), np.abs(dx)), 0, 1)
            out[t, 0] += img
            pos += vel
            for k in range(2):  # bounce
                if pos[k] < r or pos[k] > size - 1 - r:
                    vel[k] = -vel[k]
                    pos[k] = np.clip(pos[k], r, size - 1 - r)
    return np.minimum(out, 1.0)


def batch(rng: np.random.Generator, n: int, frames: int, size: int = SIZE) -> np.ndarray:
    """(n, frames, 1, size, size): n independent sequences of one or two shapes."""
    return np.stack([moving_shapes(rng, frames, size, shapes=int(rng.integers(1, 3)))
                     for _ in range(n)])
