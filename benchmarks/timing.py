"""Timing: perf_counter_ns around each call, engines interleaved round by round.

`interleaved(jobs, ...)` warms every job up, sizes its rounds from the warm-up (a time
budget per round, clamped to [min_calls, max_calls]), then runs `rounds` rounds, each
round timing every job once, in an order rotated from round to round so that no engine
always runs first (or always right after a given other one). The garbage collector is
off inside timed loops.

The median reported is the median of the per-round medians (robust to one noisy round on
a shared machine); p99 and max are taken over all timed calls of all rounds.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Job", "TimingConfig", "interleaved", "summarize"]


@dataclass
class Job:
    name: str
    make: Callable[[], Callable]     # returns the callable to time (its state lives on)
    args: list                       # inputs, cycled
    context: Callable[[], Any]       # a context manager factory (torch.inference_mode)


@dataclass
class TimingConfig:
    rounds: int = 3
    budget_s: float = 0.2            # timed seconds per job per round (approximately)
    min_calls: int = 1
    max_calls: int = 2000
    warmup_s: float = 0.05
    warmup_calls: int = 50           # at most; at least one call always
    extra: dict = field(default_factory=dict)


def _timed(fn, args, n: int) -> np.ndarray:
    out = np.empty(n, np.int64)
    clock = time.perf_counter_ns
    m = len(args)
    for k in range(n):
        a = args[k % m]
        t0 = clock()
        fn(a)
        out[k] = clock() - t0
    return out


def summarize(rounds: list[np.ndarray], scale: float = 1e-3) -> dict:
    """ns samples per round -> {median, p99, max, ...} in units of ns*scale (µs by default)."""
    allv = np.concatenate(rounds).astype(np.float64) * scale
    med_r = [float(np.median(r) * scale) for r in rounds]
    return {"median": float(np.median(med_r)), "p99": float(np.percentile(allv, 99)),
            "max": float(allv.max()), "min": float(allv.min()), "mean": float(allv.mean()),
            "round_medians": med_r, "n": int(allv.size)}


def interleaved(jobs: list[Job], cfg: TimingConfig) -> dict[str, list[np.ndarray]]:
    """Returns name -> list of per-round ns arrays."""
    fns, counts = {}, {}
    gc_was = gc.isenabled()
    try:
        for job in jobs:
            with job.context():
                fn = job.make()
                times = []
                t_start = time.perf_counter()
                k = 0
                while True:
                    times.append(_timed(fn, [job.args[k % len(job.args)]], 1)[0])
                    k += 1
                    if k >= cfg.warmup_calls or time.perf_counter() - t_start >= cfg.warmup_s:
                        break
                est = float(np.median(times[len(times) // 2:])) * 1e-9
            fns[job.name] = fn
            n = int(cfg.budget_s / est) if est > 0 else cfg.max_calls
            counts[job.name] = max(cfg.min_calls, min(cfg.max_calls, n))
        samples: dict[str, list[np.ndarray]] = {job.name: [] for job in jobs}
        for r in range(cfg.rounds):
            order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
            if r % 2:
                order = order[::-1]
            for job in order:
                with job.context():
                    gc.collect()
                    gc.disable()
                    samples[job.name].append(_timed(fns[job.name], job.args, counts[job.name]))
                    if gc_was:
                        gc.enable()
    finally:
        if gc_was:
            gc.enable()
    return samples
