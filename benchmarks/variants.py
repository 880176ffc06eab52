"""The suite's rows for the seeds' variants, each against what its user has without lstm-infer:

  xlstm      xLSTMBlockStack (4 blocks, d=64, mLSTM/sLSTM mixed) `step()` against the xlstm
             package's own `step()` (issue target: at least 20x)
  attention  LSTM + attention pooling, LSTM + causal multi-head self-attention: `step()` at
             step t against PyTorch re-running the model on the growing prefix x[:, :t+1]
  convlstm   ConvLSTM2D on a 64x64x1 frame, 16 filters, 3x3: `step()` against the PyTorch
             cell loop (Conv2d over cat([x, h])) (issue target: at least 5x)
  keras      a Keras LSTM / GRU model: `step()` against Keras's own `predict()` and a direct
             `model(x)` call on one step (KERAS_BACKEND=torch; reported, no target)

Same method as the other sections (timing.interleaved: perf_counter_ns around each call,
engines interleaved round by round, median of round medians, p99 over all calls), each
engine checked against the others on the timed path before it is timed. The models are the
ones of benchmarks/xlstm_bench.py, benchmarks/attention.py and benchmarks/convlstm.py
(those scripts remain as stand-alone runs of one row each).
"""
from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

from .timing import Job, interleaved

XLSTM_TARGET = 20.0
CONVLSTM_TARGET = 5.0
ATTENTION_POSITIONS = (64, 1024)
KERAS_SHAPES = ((16, 64), (64, 128))


def _ratios(stats: dict) -> dict:
    base = stats["lstm-infer"]
    return {n: {k: s[k] / base[k] for k in ("median", "p99", "max")} for n, s in stats.items()}


def _timed_row(suite, label: str, jobs: list[Job], cfg) -> dict:
    from .run import _stats_with_ratios
    stats, ratios = _stats_with_ratios(interleaved(jobs, cfg))
    row = {"model": {"label": label}, "stats": stats, "ratios": ratios, "agreement": True}
    suite.log(f"  {label}: " + ", ".join(f"{n} {s['median']:.2f} us" for n, s in stats.items()))
    return row


def _agree(suite, section: str, label: str, outs: dict, tol: float = 1e-4) -> bool:
    names = list(outs)
    worst = max(float(np.abs(outs[a] - outs[b]).max())
                for i, a in enumerate(names) for b in names[i + 1:])
    ok = worst < tol
    suite.agreement.append({"section": section, "model": label, "what": "timed path",
                            "engines": names, "max_abs_diff": worst,
                            "max_abs_diff_vs_float64": {}, "passed": ok})
    if not ok:
        suite.log(f"  !! agreement check FAILED: {section} {label}: {worst:.3g}; not timed")
    return ok


def _no_context():
    return contextlib.nullcontext()


def _torch_context():
    import torch
    return torch.inference_mode()


# --------------------------------------------------------------------------------------
def section_xlstm(suite) -> dict:
    import torch
    import lstm_infer
    from converters import convert_torch
    from .xlstm_bench import build_stack
    stack = build_stack()
    d = stack.config.embedding_dim
    path = os.path.join(suite.workdir, "xlstm.lstm")
    convert_torch(stack, path, example_input=torch.randn(2, 8, d))
    m = lstm_infer.load(path)
    X = np.random.default_rng(5).standard_normal((64, d)).astype(np.float32)
    tX = [torch.from_numpy(x).view(1, 1, d) for x in X]

    def package_stepper():
        state = {"s": None}

        def step(x):
            y, state["s"] = stack.step(x, state["s"])
            return y
        return step

    def ours_stepper():
        s = m.stream()
        out = np.empty(m.output_size, np.float32)
        return lambda x: s.step(x, out=out)

    s, f = m.stream(), package_stepper()
    with torch.inference_mode():
        outs = {"lstm-infer": np.stack([s.step(x) for x in X[:16]]),
                "xlstm-package": np.stack([f(x).reshape(-1).numpy() for x in tX[:16]])}
    label = "xLSTM 4 blocks (m, s, m, s), d=64, 4 heads"
    row = {"model": {"label": label}}
    if _agree(suite, "xlstm", label, outs):
        cfg = suite.cfg.variant_timing
        row = _timed_row(suite, label, [Job("lstm-infer", ours_stepper, list(X), _no_context),
                                        Job("xlstm-package", package_stepper, tX, _torch_context)],
                         cfg)
        r = row["ratios"]["xlstm-package"]["median"]
        row["targets"] = [{"name": f">= {XLSTM_TARGET:g}x xlstm package step()",
                           "pass": r >= XLSTM_TARGET, "detail": f"{r:.1f}x"}]
    return {"unit": "us per step (one call)", "engines": ["lstm-infer", "xlstm-package"],
            "rows": [row]}


# --------------------------------------------------------------------------------------
def section_attention(suite) -> dict:
    import torch
    import lstm_infer
    from converters import convert_torch
    from . import attention as att
    torch.manual_seed(0)
    T = max(ATTENTION_POSITIONS) + 1
    X = np.random.default_rng(6).standard_normal((T + 4096, att.I)).astype(np.float32)
    pool, mha = att.AttnPool().eval(), att.CausalMHA().eval()
    p_pool, p_mha = (os.path.join(suite.workdir, n) for n in ("pool.lstm", "mha.lstm"))
    convert_torch(pool, p_pool, example_input=torch.from_numpy(X[None, :6]))
    source = att.build_mha(mha, p_mha, X)
    rows = []
    for name, tm, path in (("attention pooling", pool, p_pool),
                           ("causal MHA, window 64", mha, p_mha)):
        m = lstm_infer.load(path)
        for t in ATTENTION_POSITIONS:
            label = f"LSTM(16,64) + {name}, step t={t}"

            def ours_stepper(t=t, m=m):
                s = m.stream()
                s.step_many(X[:t])
                out = np.empty(m.output_size, np.float32)
                it = iter(range(t, len(X)))
                # each call is the next step after t (the state moves on: O(1) per step)
                return lambda _x: s.step(X[next(it)], out=out)

            def torch_prefix(t=t, tm=tm):
                x = torch.from_numpy(X[None, :t + 1])
                return lambda _x: tm(x)

            s = m.stream()
            s.step_many(X[:t])
            with torch.inference_mode():
                outs = {"lstm-infer": s.step(X[t]),
                        "torch-prefix": tm(torch.from_numpy(X[None, :t + 1]))[0].numpy()}
            row = {"model": {"label": label}}
            if _agree(suite, "attention", label, outs):
                row = _timed_row(suite, label, [Job("lstm-infer", ours_stepper, [0], _no_context),
                                                Job("torch-prefix", torch_prefix, [0], _torch_context)],
                                 suite.cfg.variant_timing)
            rows.append(row)
    return {"unit": "us per step (one call)", "engines": ["lstm-infer", "torch-prefix"],
            "rows": rows, "note": f"causal MHA model {source}"}


# --------------------------------------------------------------------------------------
def section_convlstm(suite) -> dict:
    import torch
    from . import convlstm as cl
    S, C, F, k = 64, 1, 16, 3
    cell = cl.torch_cell(C, F, k).eval()
    m = cl.engine_model(cell, S, C, F, k, suite.workdir)
    frames = np.random.default_rng(7).standard_normal((8, S, S, C)).astype(np.float32)
    xt = [torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1))[None]) for f in frames]

    def ours_stepper():
        s = m.stream()
        out = np.empty(m.output_size, np.float32)
        return lambda x: s.step(x, out=out)

    def torch_stepper():
        st = {"h": torch.zeros(1, F, S, S), "c": torch.zeros(1, F, S, S)}

        def step(x):
            st["h"], st["c"] = cell(x, st["h"], st["c"])
            return st["h"]
        return step

    s, f = m.stream(), torch_stepper()
    with torch.inference_mode():
        outs = {"lstm-infer": np.stack([s.step(x.reshape(-1)) for x in frames[:4]]),
                "torch-convlstm": np.stack([f(x)[0].numpy().transpose(1, 2, 0).reshape(-1)
                                            for x in xt[:4]])}
    label = f"ConvLSTM2D frame {S}x{S}x{C}, {F} filters, {k}x{k}"
    row = {"model": {"label": label}}
    if _agree(suite, "convlstm", label, outs):
        row = _timed_row(suite, label,
                         [Job("lstm-infer", ours_stepper, list(frames.reshape(len(frames), -1)),
                              _no_context),
                          Job("torch-convlstm", torch_stepper, xt, _torch_context)],
                         suite.cfg.variant_timing)
        r = row["ratios"]["torch-convlstm"]["median"]
        flops = 2 * S * S * k * k * (C + F) * 4 * F
        row["gflops"] = flops / (row["stats"]["lstm-infer"]["median"] * 1e3)
        row["targets"] = [{"name": f">= {CONVLSTM_TARGET:g}x PyTorch cell loop",
                           "pass": r >= CONVLSTM_TARGET, "detail": f"{r:.2f}x"}]
    return {"unit": "us per frame (one call)", "engines": ["lstm-infer", "torch-convlstm"],
            "rows": [row]}


# --------------------------------------------------------------------------------------
def _keras_model(kind: str, I: int, H: int, path: str):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    keras.utils.set_random_seed(0)
    layer = keras.layers.LSTM if kind == "LSTM" else keras.layers.GRU
    model = keras.Sequential([keras.Input((None, I)), layer(H, return_sequences=True),
                              keras.layers.Dense(I)])
    model.save(path)
    return model


def section_keras(suite) -> dict:
    import lstm_infer
    from converters import convert_keras
    rows = []
    for kind in ("LSTM", "GRU"):
        for I, H in KERAS_SHAPES:
            label = f"Keras {kind}({H}) + Dense({I}), input {I}"
            src = os.path.join(suite.workdir, f"keras_{kind}_{I}_{H}.keras")
            km = _keras_model(kind, I, H, src)
            dst = src.replace(".keras", ".lstm")
            convert_keras(src, dst)
            m = lstm_infer.load(dst)
            X = np.random.default_rng(8).standard_normal((64, I)).astype(np.float32)
            one = [x[None, None] for x in X]

            def ours_stepper(m=m):
                s = m.stream()
                out = np.empty(m.output_size, np.float32)
                return lambda x: s.step(x, out=out)

            def predict(km=km):
                return lambda x: km.predict(x, verbose=0)

            def call(km=km):
                return lambda x: km(x, training=False)

            outs = {"lstm-infer": m.stream().step(X[0]),
                    "keras-predict": np.asarray(km.predict(one[0], verbose=0)).reshape(-1),
                    "keras-call": np.asarray(km(one[0], training=False).detach()).reshape(-1)}
            row = {"model": {"label": label}}
            if _agree(suite, "keras", label, outs):
                row = _timed_row(suite, label, [Job("lstm-infer", ours_stepper, list(X), _no_context),
                                                Job("keras-predict", predict, one, _no_context),
                                                Job("keras-call", call, one, _no_context)],
                                 suite.cfg.variant_timing)
            rows.append(row)
    return {"unit": "us per step (one call)",
            "engines": ["lstm-infer", "keras-predict", "keras-call"], "rows": rows,
            "note": "Keras 3 on its torch backend (KERAS_BACKEND=torch, 1 thread); Keras has "
                    "no per-step state API for a stateless model, so its figures are one "
                    "step from the zero state, what `predict` on a (1, 1, I) input costs"}


SECTIONS = {"xlstm": section_xlstm, "attention": section_attention,
            "convlstm": section_convlstm, "keras": section_keras}

TITLES = {
    "xlstm": "xLSTM: per-step latency against the xlstm package's step() (µs per step)",
    "attention": "Attention: step() at step t against PyTorch re-running the prefix (µs per step)",
    "convlstm": "ConvLSTM2D: per-frame step() against the PyTorch cell loop (µs per frame)",
    "keras": "Keras models: step() against Keras predict() and model(x) on one step (µs per step)",
}
