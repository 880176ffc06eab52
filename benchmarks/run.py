"""The benchmark suite: `python -m benchmarks.run [--quick] [--only per_step,chunk,...]`.

Sections (in this order; `--only` picks some):
  accuracy    max abs error of every engine against a float64 PyTorch reference
  per_step    stream.step(x) from Python vs onnxruntime session.run (state in/out),
              PyTorch cells + Linear, PyTorch nn.LSTM/GRU fed one step
  chunk       step_many on chunks of 1/16/256/4096 steps vs onnxruntime's sequence
              node and PyTorch nn.LSTM/GRU on the same chunk (state carried)
  throughput  run() on whole sequences (T, batch B) vs onnxruntime and PyTorch
  streams     streams(n).step vs PyTorch batched cells and onnxruntime with batch n
  startup     fresh process: import, load, first output (Numba cache warm and empty);
              in-process load time and file sizes
  xlstm, attention, convlstm, keras
              the seeds' variants against what their users have without lstm-infer
              (benchmarks/variants.py)

Before anything is timed, each section checks that every engine it times agrees with the
others (max abs difference < 1e-4) on a short sequence through exactly the code path it
times; a configuration that fails is reported and not timed, and the run exits with 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from . import variants
from .engines import configure_torch, make_engine, thread_settings
from .models import Bundle, ModelSpec, build_bundle, torch_module
from .timing import Job, TimingConfig, interleaved, summarize

SECTIONS = ("accuracy", "per_step", "chunk", "throughput", "streams", "startup", "xlstm",
            "attention", "convlstm", "keras")
AGREE_TOL = 1e-4
HERE = os.path.dirname(os.path.abspath(__file__))
LEVEL = 0.95  # "at least level": lstm-infer's time within 5% of the other engine's

# Per-step cost inside a chunk of 4096 (µs), LSTM, from the issue.
CHUNK_TARGETS_US = {(16, 64): 1.2, (64, 128): 5.4, (128, 256): 30.0, (256, 512): 118.0}


@dataclass
class SuiteConfig:
    shapes: list = field(default_factory=lambda: [(1, 8), (1, 32), (16, 64), (64, 128),
                                                   (128, 256), (256, 512)])
    ops: list = field(default_factory=lambda: ["LSTM", "GRU"])
    layers: list = field(default_factory=lambda: [1, 2])
    sections: tuple = SECTIONS
    # accuracy
    accuracy_T: int = 500
    # per_step
    step_timing: TimingConfig = field(default_factory=lambda: TimingConfig(
        rounds=5, budget_s=0.07, min_calls=300, max_calls=2000, warmup_s=0.05, warmup_calls=300))
    step_inputs: int = 256
    # chunk
    chunks: list = field(default_factory=lambda: [1, 16, 256, 4096])
    chunk_layers: list = field(default_factory=lambda: [1])
    chunk_timing: TimingConfig = field(default_factory=lambda: TimingConfig(
        rounds=5, budget_s=0.05, min_calls=1, max_calls=2000, warmup_s=0.03, warmup_calls=20))
    # throughput
    seq_lens: list = field(default_factory=lambda: [1000, 10000])
    batches: list = field(default_factory=lambda: [1, 32])
    throughput_layers: list = field(default_factory=lambda: [1])
    # FLOPs per run() call above which T is cut down (so one call stays ~0.2-0.5 s)
    throughput_flop_cap: float = 1.5e10
    throughput_min_T: int = 100
    throughput_timing: TimingConfig = field(default_factory=lambda: TimingConfig(
        rounds=3, budget_s=0.15, min_calls=1, max_calls=50, warmup_s=0.0, warmup_calls=1))
    # streams
    stream_shapes: list = field(default_factory=lambda: [(16, 64), (128, 256)])
    stream_counts: list = field(default_factory=lambda: [1, 16, 256, 4096])
    stream_layers: list = field(default_factory=lambda: [1])
    streams_timing: TimingConfig = field(default_factory=lambda: TimingConfig(
        rounds=3, budget_s=0.1, min_calls=3, max_calls=2000, warmup_s=0.03, warmup_calls=20))
    # startup
    startup_model: tuple = ("LSTM", 1, 16, 64)
    # xlstm, attention, convlstm, keras (benchmarks/variants.py)
    variant_timing: TimingConfig = field(default_factory=lambda: TimingConfig(
        rounds=5, budget_s=0.1, min_calls=3, max_calls=300, warmup_s=0.05, warmup_calls=20))
    startup_warm_runs: int = 3
    startup_cold_runs: int = 2
    load_repeats: int = 5
    seed: int = 0
    quick: bool = False

    def models(self, layers=None, shapes=None) -> list[ModelSpec]:
        """The run's models, optionally restricted to some layer counts / shapes."""
        use_layers = [L for L in self.layers if layers is None or L in layers]
        use_shapes = [tuple(s) for s in self.shapes
                      if shapes is None or tuple(s) in {tuple(x) for x in shapes}]
        return [ModelSpec(op, L, I, H, self.seed) for op in self.ops for L in use_layers
                for (I, H) in use_shapes]


def quick_config() -> SuiteConfig:
    return SuiteConfig(
        shapes=[(1, 8), (16, 64), (64, 128)], layers=[1], accuracy_T=200,
        step_timing=TimingConfig(rounds=2, budget_s=0.04, min_calls=200, max_calls=1000,
                                 warmup_s=0.02, warmup_calls=100),
        chunk_layers=[1],
        chunk_timing=TimingConfig(rounds=2, budget_s=0.04, min_calls=1, max_calls=500,
                                  warmup_s=0.01, warmup_calls=5),
        seq_lens=[1000], batches=[1, 32],
        throughput_timing=TimingConfig(rounds=2, budget_s=0.05, min_calls=1, max_calls=10,
                                       warmup_s=0.0, warmup_calls=1),
        stream_shapes=[(16, 64)], stream_counts=[1, 16, 256, 4096],
        streams_timing=TimingConfig(rounds=2, budget_s=0.04, min_calls=2, max_calls=500,
                                    warmup_s=0.01, warmup_calls=5),
        startup_warm_runs=1, startup_cold_runs=1, load_repeats=3, quick=True)


def smoke_config() -> SuiteConfig:
    """The smallest configuration: one tiny model, a couple of calls of everything that runs
    in-process (used by tests/test_benchmarks.py)."""
    t = TimingConfig(rounds=1, budget_s=0.0, min_calls=2, max_calls=2, warmup_s=0.0, warmup_calls=1)
    return SuiteConfig(
        shapes=[(1, 8)], ops=["LSTM", "GRU"], layers=[1], accuracy_T=8,
        sections=("accuracy", "per_step", "chunk", "throughput", "streams"),
        step_timing=t, step_inputs=4, chunks=[1, 16], chunk_layers=[1], chunk_timing=t,
        seq_lens=[16], batches=[1, 2], throughput_timing=t, stream_shapes=[(1, 8)],
        stream_counts=[1, 4], streams_timing=t, variant_timing=t, load_repeats=1, quick=True)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
class Suite:
    def __init__(self, cfg: SuiteConfig, workdir: str, log=print):
        self.cfg = cfg
        self.workdir = workdir
        self.log = log
        self._bundles: dict[ModelSpec, Bundle] = {}
        self._refs: dict[ModelSpec, object] = {}
        self.agreement: list[dict] = []
        self.torch = configure_torch()

    def bundle(self, spec: ModelSpec) -> Bundle:
        if spec not in self._bundles:
            self._bundles[spec] = build_bundle(spec, self.workdir)
        return self._bundles[spec]

    def reference(self, spec: ModelSpec, X: np.ndarray) -> np.ndarray:
        """float64 PyTorch: X (B, T, I) -> (B, T, O) from the zero state."""
        torch = self.torch
        if spec not in self._refs:
            self._refs[spec] = torch_module(spec, torch.float64)
        with torch.inference_mode():
            y = self._refs[spec](torch.from_numpy(X.transpose(1, 0, 2).astype(np.float64)))[0]
        return y.numpy().transpose(1, 0, 2)

    def rng(self, spec: ModelSpec, salt: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, salt, spec.input_size, spec.hidden_size,
                                      spec.layers, spec.gates])

    def check(self, section: str, spec: ModelSpec, outputs: dict[str, np.ndarray],
              ref: np.ndarray, what: str = "") -> dict:
        """All engines pairwise within AGREE_TOL; also each one's distance to float64."""
        names = list(outputs)
        worst = 0.0
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                worst = max(worst, float(np.abs(outputs[names[a]] - outputs[names[b]]).max()))
        vs_ref = {n: float(np.abs(o - ref).max()) for n, o in outputs.items()}
        ok = bool(worst < AGREE_TOL and max(vs_ref.values()) < AGREE_TOL)
        rec = {"section": section, "model": spec.key, "what": what, "engines": names,
               "max_abs_diff": worst, "max_abs_diff_vs_float64": vs_ref, "passed": ok}
        self.agreement.append(rec)
        if not ok:
            self.log(f"  !! agreement check FAILED: {section} {spec.label} {what}: pairwise "
                     f"{worst:.3g}, vs float64 {vs_ref}; not timed")
        return rec


def _stats_with_ratios(samples: dict[str, list[np.ndarray]], per: float = 1.0) -> tuple[dict, dict]:
    stats = {}
    for name, rounds in samples.items():
        stats[name] = summarize(rounds, scale=1e-3 / per)
    base = stats.get("lstm-infer")
    ratios = {}
    if base:
        for name, s in stats.items():
            ratios[name] = {k: (s[k] / base[k] if base[k] > 0 else float("inf"))
                            for k in ("median", "p99", "max")}
    return stats, ratios


def _target(name: str, passed: bool, detail: str) -> dict:
    return {"name": name, "pass": bool(passed), "detail": detail}


# --------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------
def section_accuracy(suite: Suite) -> dict:
    cfg, rows = suite.cfg, []
    for spec in cfg.models():
        b = suite.bundle(spec)
        X = suite.rng(spec, 1).standard_normal((1, cfg.accuracy_T, spec.input_size)).astype(np.float32)
        ref = suite.reference(spec, X)[0]
        out = {}
        li = make_engine("lstm-infer", b)
        step = li.new_stepper()
        out["lstm-infer"] = np.stack([step(x) for x in li.step_inputs(X[0])])
        out["lstm-infer step_many"] = li.new_chunker()(li.chunk_input(X[0]))
        out["lstm-infer run"] = li.seq_out(li.run(li.seq_input(X)))[0]
        ort = make_engine("onnxruntime", b)
        out["onnxruntime"] = ort.seq_out(ort.run(ort.seq_input(X)))[0]
        for name in ("torch-cell", "torch-rnn"):
            e = make_engine(name, b)
            with e.context():
                f = e.new_stepper()
                out[name] = np.stack([e.step_out(f(x)) for x in e.step_inputs(X[0])])
        err = {n: float(np.abs(o.astype(np.float64) - ref).max()) for n, o in out.items()}
        base = err["lstm-infer"]
        rows.append({"model": spec.as_dict(), "T": cfg.accuracy_T, "max_abs_error": err,
                     "ratios": {n: (e / base if base > 0 else float("inf")) for n, e in err.items()},
                     "output_scale": float(np.abs(ref).max())})
        suite.log(f"  accuracy {spec.label}: " + ", ".join(f"{n} {e:.2e}" for n, e in err.items()))
    return {"unit": "max abs error vs float64", "input": "standard normal", "rows": rows}


def section_per_step(suite: Suite) -> dict:
    cfg, rows = suite.cfg, []
    names = ["lstm-infer", "onnxruntime", "torch-cell", "torch-rnn"]
    for spec in cfg.models():
        b = suite.bundle(spec)
        engines = {n: make_engine(n, b) for n in names}
        Xc = suite.rng(spec, 2).standard_normal((1, 16, spec.input_size)).astype(np.float32)
        outs = {}
        for n, e in engines.items():
            with e.context():
                f = e.new_stepper()
                outs[n] = np.stack([e.step_out(f(x)) for x in e.step_inputs(Xc[0])])
        agree = suite.check("per_step", spec, outs, suite.reference(spec, Xc)[0], "16 steps")
        row = {"model": spec.as_dict(), "agreement": agree["passed"]}
        if agree["passed"]:
            X = suite.rng(spec, 3).standard_normal((cfg.step_inputs, spec.input_size)).astype(np.float32)
            jobs = [Job(n, e.new_stepper, e.step_inputs(X), e.context) for n, e in engines.items()]
            stats, ratios = _stats_with_ratios(interleaved(jobs, cfg.step_timing))
            row.update(stats=stats, ratios=ratios)
            r = {n: ratios[n]["median"] for n in ratios}
            worst = min(r["onnxruntime"], r["torch-cell"])
            row["targets"] = [_target("faster than onnxruntime step and PyTorch cells", worst > 1.0,
                                      f"{worst:.2f}x")]
            if spec.hidden_size <= 128:
                row["targets"].insert(0, _target(">= 10x onnxruntime step and PyTorch cells",
                                                 worst >= 10.0, f"{worst:.1f}x"))
            suite.log(f"  per_step {spec.label}: " + ", ".join(
                f"{n} {stats[n]['median']:.2f} us" for n in names))
        rows.append(row)
    return {"unit": "us per step (one call)", "engines": names, "rows": rows}


def section_chunk(suite: Suite) -> dict:
    cfg, rows = suite.cfg, []
    names = ["lstm-infer", "onnxruntime", "torch-rnn"]
    for spec in cfg.models(layers=cfg.chunk_layers):
        b = suite.bundle(spec)
        engines = {n: make_engine(n, b) for n in names}
        Xc = suite.rng(spec, 4).standard_normal((1, 16, spec.input_size)).astype(np.float32)
        outs = {}
        for n, e in engines.items():
            with e.context():
                f = e.new_chunker()
                outs[n] = np.concatenate([e.chunk_out(f(e.chunk_input(Xc[0, a:a + 8])))
                                          for a in (0, 8)])
        agree = suite.check("chunk", spec, outs, suite.reference(spec, Xc)[0], "2 chunks of 8")
        for L in cfg.chunks:
            row = {"model": spec.as_dict(), "chunk": L, "agreement": agree["passed"]}
            rows.append(row)
            if not agree["passed"]:
                continue
            k = max(1, min(64, 8192 // L))
            X = suite.rng(spec, 5 + L).standard_normal((k, L, spec.input_size)).astype(np.float32)
            jobs = [Job(n, e.new_chunker, [e.chunk_input(x) for x in X], e.context)
                    for n, e in engines.items()]
            stats, ratios = _stats_with_ratios(interleaved(jobs, cfg.chunk_timing), per=L)
            row.update(stats=stats, ratios=ratios)
            row["targets"] = []
            if L == max(cfg.chunks) and L >= 4096:
                tgt = CHUNK_TARGETS_US.get((spec.input_size, spec.hidden_size))
                if spec.op == "LSTM" and spec.layers == 1 and tgt is not None:
                    v = stats["lstm-infer"]["median"]
                    row["targets"].append(_target(f"<= {tgt:g} us/step", v <= tgt, f"{v:.2f} us"))
            if L >= 16:  # issue 10: "at least level with onnxruntime's sequence op ... from chunk 16 up"
                r = ratios["onnxruntime"]["median"]
                row["targets"].append(_target("chunk >= 16: at least level with onnxruntime sequence",
                                              r >= LEVEL, f"{r:.2f}x"))
            suite.log(f"  chunk {spec.label} T={L}: " + ", ".join(
                f"{n} {stats[n]['median']:.3f} us/step" for n in names))
    return {"unit": "us per step (chunk time / chunk length)", "engines": names, "rows": rows}


def section_throughput(suite: Suite) -> dict:
    cfg, rows = suite.cfg, []
    names = ["lstm-infer", "onnxruntime", "torch-rnn"]
    for spec in cfg.models(layers=cfg.throughput_layers):
        b = suite.bundle(spec)
        engines = {n: make_engine(n, b) for n in names}
        Xc = suite.rng(spec, 6).standard_normal((3, 16, spec.input_size)).astype(np.float32)
        outs = {}
        for n, e in engines.items():
            with e.context():
                outs[n] = e.seq_out(e.run(e.seq_input(Xc)))
        agree = suite.check("throughput", spec, outs, suite.reference(spec, Xc), "B=3, T=16")
        for B in cfg.batches:
            done = set()
            for T_req in cfg.seq_lens:
                cap_T = int(cfg.throughput_flop_cap // (spec.flops_per_step() * B))
                T = min(T_req, max(cfg.throughput_min_T, cap_T // 100 * 100))
                if T in done:
                    continue
                done.add(T)
                row = {"model": spec.as_dict(), "T": T, "T_requested": T_req, "batch": B,
                       "agreement": agree["passed"]}
                rows.append(row)
                if not agree["passed"]:
                    continue
                X = suite.rng(spec, 7).standard_normal((B, T, spec.input_size)).astype(np.float32)
                jobs = [Job(n, (lambda e=e: e.run), [e.seq_input(X)], e.context)
                        for n, e in engines.items()]
                stats, ratios = _stats_with_ratios(interleaved(jobs, cfg.throughput_timing),
                                                   per=B * T)
                row.update(stats=stats, ratios=ratios)
                row["steps_per_s"] = {n: 1e6 / s["median"] for n, s in stats.items()}
                worst = min(ratios["onnxruntime"]["median"], ratios["torch-rnn"]["median"])
                row["targets"] = [_target("ahead of PyTorch and onnxruntime", worst > 1.0,
                                          f"{worst:.2f}x") if B == 1 else
                                  _target("at least level with PyTorch and onnxruntime",
                                          worst >= LEVEL, f"{worst:.2f}x")]
                suite.log(f"  throughput {spec.label} T={T} B={B}: " + ", ".join(
                    f"{n} {stats[n]['median'] * 1e3:.0f} ns/step" for n in names))
    note = (f"T is cut below the requested length where one call would exceed "
            f"{cfg.throughput_flop_cap:.2g} FLOPs (to fit the time budget). lstm-infer's run() "
            f"computes each layer's input projection for all steps with its single-threaded Numba "
            f"kernels (matmat_acc; packed panels, matmat_packed, for one sequence and for a batch with "
            f"AVX-512), then loops the recurrence (an LSTM batch with AVX-512: gates from both "
            f"matrices in one pass of plain FMA chains, matmat_fma2, within 1e-5 of lone sequences; "
            f"a GRU batch: its input and recurrent products per step with the same kernel); "
            f"it calls no BLAS")
    return {"unit": "us per sequence step (call time / (B*T))", "engines": names, "rows": rows,
            "note": note}


def section_streams(suite: Suite) -> dict:
    cfg, rows = suite.cfg, []
    names = ["lstm-infer", "onnxruntime", "torch-cell"]
    for spec in cfg.models(layers=cfg.stream_layers, shapes=cfg.stream_shapes):
        b = suite.bundle(spec)
        engines = {n: make_engine(n, b) for n in names}
        Xc = suite.rng(spec, 8).standard_normal((5, 3, spec.input_size)).astype(np.float32)
        outs = {}
        for n, e in engines.items():
            with e.context():
                f = e.new_pool(5)
                outs[n] = np.stack([e.pool_out(f(e.pool_input(Xc[:, t]))) for t in range(3)], axis=1)
        agree = suite.check("streams", spec, outs, suite.reference(spec, Xc), "5 streams, 3 steps")
        for n_streams in cfg.stream_counts:
            row = {"model": spec.as_dict(), "streams": n_streams, "agreement": agree["passed"]}
            rows.append(row)
            if not agree["passed"]:
                continue
            X = suite.rng(spec, 9).standard_normal((4, n_streams, spec.input_size)).astype(np.float32)
            jobs = [Job(n, (lambda e=e: e.new_pool(n_streams)), [e.pool_input(x) for x in X], e.context)
                    for n, e in engines.items()]
            stats, ratios = _stats_with_ratios(interleaved(jobs, cfg.streams_timing))
            row.update(stats=stats, ratios=ratios)
            row["us_per_stream_step"] = {n: s["median"] / n_streams for n, s in stats.items()}
            if n_streams == 4096 and spec.hidden_size == 64:
                r = ratios["torch-cell"]["median"]
                row["targets"] = [_target("at least level with PyTorch batched cells", r >= LEVEL,
                                          f"{r:.2f}x")]
            suite.log(f"  streams {spec.label} n={n_streams}: " + ", ".join(
                f"{n} {stats[n]['median']:.1f} us" for n in names))
    return {"unit": "us per call (all n streams one step)", "engines": names, "rows": rows}


def _child(engine: str, path: str, spec: ModelSpec, env: dict) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "_startup_child.py"), engine, path, spec.op,
           str(spec.layers), str(spec.input_size), str(spec.hidden_size)]
    t0 = time.monotonic_ns()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    t_exit = time.monotonic_ns()
    if p.returncode != 0:
        raise RuntimeError(f"start-up child for {engine} failed:\n{p.stderr[-2000:]}")
    line = [x for x in p.stdout.splitlines() if x.startswith("{")][-1]
    import json
    t = json.loads(line)
    return {"first_output_s": (t["t_output"] - t0) / 1e9, "process_s": (t_exit - t0) / 1e9,
            "interpreter_s": (t["t_start"] - t0) / 1e9, "import_s": (t["t_import"] - t["t_start"]) / 1e9,
            "load_s": (t["t_load"] - t["t_import"]) / 1e9, "first_call_s": (t["t_output"] - t["t_load"]) / 1e9,
            "peak_rss_mib": t.get("peak_rss_mib")}


def _startup_stats(runs: list[dict]) -> dict:
    out = {"runs": runs}
    for k in runs[0]:
        vals = [r[k] for r in runs]
        if any(v is None for v in vals):
            out[k] = None
            continue
        out[k] = {"median": float(np.median(vals)), "max": float(np.max(vals)), "min": float(np.min(vals))}
    return out


def section_startup(suite: Suite) -> dict:
    cfg = suite.cfg
    op, L, I, H = cfg.startup_model
    spec = ModelSpec(op, L, I, H, cfg.seed)
    b = suite.bundle(spec)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(HERE), env.get("PYTHONPATH")) if p)
    paths = {"lstm-infer": b.lstm_path, "onnxruntime": b.onnx_path, "torch": b.pt_path}
    # Warm: one untimed run per engine first (page cache, Numba cache), then interleaved runs.
    for e, p in paths.items():
        _child(e, p, spec, env)
    warm = {e: [] for e in paths}
    for _ in range(cfg.startup_warm_runs):
        for e, p in paths.items():
            warm[e].append(_child(e, p, spec, env))
    cold = []
    for _ in range(cfg.startup_cold_runs):
        with tempfile.TemporaryDirectory(prefix="lstm-infer-bench-numba-") as d:
            cold.append(_child("lstm-infer", b.lstm_path, spec, {**env, "NUMBA_CACHE_DIR": d}))
    rows = [{"engine": e, "cache": "warm", **_startup_stats(r)} for e, r in warm.items()]
    rows.append({"engine": "lstm-infer", "cache": "empty", **_startup_stats(cold)})
    base = np.median([r["first_output_s"] for r in warm["lstm-infer"]])
    for r in rows:
        r["ratio"] = r["first_output_s"]["median"] / base
    w = rows[0]["first_output_s"]["median"]
    targets = [_target("warm cache: first output < 1 s", w < 1.0, f"{w:.2f} s")]
    for r in rows:
        suite.log(f"  startup {r['engine']} ({r['cache']} cache): first output "
                  f"{r['first_output_s']['median']:.2f} s")
    # In-process load time and file sizes, for every model of the run.
    import lstm_infer
    import onnxruntime as ort
    from .engines import ort_session_options
    torch = suite.torch
    loads = []
    for s in cfg.models():
        bb = suite.bundle(s)

        def t_lstm():
            lstm_infer.load(bb.lstm_path)

        def t_ort():
            ort.InferenceSession(bb.onnx_path, sess_options=ort_session_options(),
                                 providers=["CPUExecutionProvider"])

        def t_torch():
            net = torch_module(s)
            net.load_state_dict(torch.load(bb.pt_path, weights_only=True))

        times = {}
        for name, fn in (("lstm-infer", t_lstm), ("onnxruntime", t_ort), ("torch", t_torch)):
            fn()
            ts = []
            for _ in range(cfg.load_repeats):
                t0 = time.perf_counter_ns()
                fn()
                ts.append((time.perf_counter_ns() - t0) / 1e6)
            times[name] = float(np.median(ts))
        sizes = {"lstm-infer": os.path.getsize(bb.lstm_path), "onnxruntime": os.path.getsize(bb.onnx_path),
                 "torch": os.path.getsize(bb.pt_path)}
        loads.append({"model": s.as_dict(), "load_ms": times, "file_bytes": sizes,
                      "ratios": {n: times[n] / times["lstm-infer"] for n in times}})
    return {"model": spec.as_dict(), "rows": rows, "targets": targets, "loads": loads,
            "note": "first output = from the parent's spawn of `python child.py` to the child's "
                    "first output (interpreter start, imports, load, first call); peak RSS = the "
                    "child's VmHWM at its first output; warm = default "
                    "Numba cache already filled, empty = NUMBA_CACHE_DIR set to a fresh directory. "
                    "Load: in-process, lstm_infer.load / ort.InferenceSession / torch module "
                    "construction + torch.load(weights_only=True) + load_state_dict."}


SECTION_FUNCS = {"accuracy": section_accuracy, "per_step": section_per_step, "chunk": section_chunk,
                 "throughput": section_throughput, "streams": section_streams,
                 "startup": section_startup, **variants.SECTIONS}


# --------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    import numba
    import numpy
    versions = {"python": platform.python_version(), "numpy": numpy.__version__,
                "numba": numba.__version__}
    try:
        import llvmlite
        versions["llvmlite"] = llvmlite.__version__
    except ImportError:
        pass
    import lstm_infer
    versions["lstm_infer"] = lstm_infer.__version__
    for mod in ("torch", "onnx", "onnxruntime"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    flags = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = [x for x in ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")
                             if x in have]
                    break
    except OSError:
        pass
    git = {}
    try:
        root = os.path.dirname(HERE)
        git["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                       text=True, timeout=10).stdout.strip()
        # result files an earlier run in this tree wrote do not make the code dirty
        git["dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                            "--", ".", ":(exclude)benchmarks/results"],
                                           cwd=root, capture_output=True, text=True,
                                           timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "cpu_affinity": affinity,
            "cpu_flags": flags, "machine": platform.machine(), "platform": platform.platform(),
            "versions": versions, "threads": thread_settings(), "git": git, "isa": isa_settings(),
            "loadavg_at_start": load,
            "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                "NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR")
                    if k in os.environ}}


# What `--isa avx2` sets before anything is imported: Numba compiles for Haswell with the
# AVX-512 features off (NUMBA_CPU_NAME alone keeps the host's features), in a cache of its
# own; PyTorch's kernels and oneDNN are capped at AVX2. onnxruntime has no such switch (MLAS
# picks its kernels by cpuid), so on an AVX-512 machine it keeps AVX-512: the comparison is
# lstm-infer on AVX2 against onnxruntime on AVX-512, harder for lstm-infer than a real AVX2
# machine would be.
AVX2_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fsgsbase,+fxsr,+invpcid,"
                 "+lzcnt,+mmx,+movbe,+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,"
                 "+ssse3,+xsave,+xsaveopt")
ISA_ENV = {"avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": AVX2_FEATURES,
                    "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}


def isa_settings() -> dict:
    """The instruction sets each engine runs with in this process."""
    import numba
    from lstm_infer.kernels.linalg import WIDE_VECTORS
    out = {"requested": os.environ.get("LSTM_INFER_BENCH_ISA", "host"),
           "lstm-infer": {"numba_cpu_name": numba.config.CPU_NAME or "host",
                          "numba_cpu_features": numba.config.CPU_FEATURES or "host",
                          "avx512_kernels": bool(WIDE_VECTORS)},
           "onnxruntime": "its own dispatch by cpuid (no switch)"}
    try:
        import torch
        out["torch"] = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        pass
    return out


def _rerun_for_isa(isa: str, argv: list[str]) -> int:
    """This command again in a fresh process with ISA_ENV[isa] set (Numba and PyTorch read
    them when first imported) and a Numba cache of its own, so the host build's cache is
    neither used nor overwritten."""
    env = dict(os.environ, LSTM_INFER_BENCH_ISA=isa, **ISA_ENV[isa])
    env["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"lstm-infer-bench-{isa}-cache")
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *argv], env=env,
                          cwd=os.path.dirname(HERE)).returncode


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------
def _jsonable(o):
    if dataclasses.is_dataclass(o):
        return _jsonable(dataclasses.asdict(o))
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    return o


def run_suite(cfg: SuiteConfig, log=print) -> dict:
    """Run the configured sections in this process; returns the result document."""
    t_start = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result = {"meta": {"started": started, "argv": sys.argv, "quick": cfg.quick,
                       "environment": environment(),
                       "method": {
                           "clock": "time.perf_counter_ns around each call",
                           "rounds": "engines interleaved (rotated order) round by round; median = "
                                     "median of the per-round medians, p99 and max over all calls",
                           "ratios": "other engine / lstm-infer for every time and error figure: "
                                     "> 1 means lstm-infer is faster (or more accurate)",
                           "inputs": "standard normal float32, prepared ahead in each engine's "
                                     "native format (numpy for lstm-infer and onnxruntime, torch "
                                     "tensors for PyTorch); outputs left as each engine returns them",
                           "agreement_tolerance": AGREE_TOL, "level": LEVEL}},
              "config": _jsonable(cfg), "sections": {}}
    from . import peak
    result["meta"]["peak"] = peak.measure()
    log("peak: " + ", ".join(f"{k} {v:.1f}" for k, v in result["meta"]["peak"].items()
                             if isinstance(v, float)))
    with tempfile.TemporaryDirectory(prefix="lstm-infer-bench-") as d:
        suite = Suite(cfg, d, log)
        for name in SECTIONS:
            if name not in cfg.sections:
                continue
            log(f"[{name}] ({time.perf_counter() - t_start:.0f} s)")
            t0 = time.perf_counter()
            sec = SECTION_FUNCS[name](suite)
            sec["seconds"] = time.perf_counter() - t0
            result["sections"][name] = sec
    result["agreement"] = {"tolerance": AGREE_TOL, "passed": all(a["passed"] for a in suite.agreement),
                           "checks": suite.agreement}
    result["meta"]["seconds"] = time.perf_counter() - t_start
    try:
        result["meta"]["loadavg_at_end"] = os.getloadavg()
    except OSError:
        pass
    return _jsonable(result)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a subset: 3 shapes, 1 layer, fewer steps "
                                                         "(1-2 minutes)")
    ap.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--shapes", default="", help="override the (input,hidden) shapes, e.g. 16x64,64x128")
    ap.add_argument("--ops", default="", help="override the recurrent ops, e.g. LSTM")
    ap.add_argument("--layers", default="", help="override the layer counts, e.g. 1")
    ap.add_argument("--rounds", type=int, default=0, help="override the number of timing rounds")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"),
                    help="where latest.json/.md/.png go (default: benchmarks/results)")
    ap.add_argument("--name", default="", help="base name of the result files (default: latest, "
                                                  "or the --isa name)")
    ap.add_argument("--isa", default="", choices=["", *ISA_ENV],
                    help="compile lstm-infer's kernels for this instruction set only (and cap "
                         "PyTorch to it), e.g. avx2 on an AVX-512 machine; see ISA_ENV")
    args = ap.parse_args(argv)
    if args.isa and os.environ.get("LSTM_INFER_BENCH_ISA") != args.isa:
        rest = list(sys.argv[1:] if argv is None else argv)
        return _rerun_for_isa(args.isa, rest if args.name else rest + ["--name", args.isa])
    args.name = args.name or "latest"

    cfg = quick_config() if args.quick else SuiteConfig()
    if args.only:
        sel = tuple(s.strip() for s in args.only.split(",") if s.strip())
        bad = [s for s in sel if s not in SECTIONS]
        if bad:
            ap.error(f"unknown section(s) {bad}; choose from {','.join(SECTIONS)}")
        cfg.sections = sel
    if args.shapes:
        cfg.shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",")]
    if args.ops:
        cfg.ops = [s.strip().upper() for s in args.ops.split(",")]
    if args.layers:
        cfg.layers = [int(s) for s in args.layers.split(",")]
    if args.rounds:
        for t in (cfg.step_timing, cfg.chunk_timing, cfg.throughput_timing, cfg.streams_timing):
            t.rounds = args.rounds

    from . import report
    res = run_suite(cfg)
    os.makedirs(args.out_dir, exist_ok=True)
    paths = report.write_all(res, args.out_dir, args.name)
    print(f"\nwrote {', '.join(paths)} in {res['meta']['seconds']:.0f} s")
    if not res["agreement"]["passed"]:
        print("AGREEMENT CHECK FAILED for some configurations (see the report); they were not timed",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
