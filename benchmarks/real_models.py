"""Real published models (benchmarks/corpus.py): per-frame latency against onnxruntime.

    python -m benchmarks.real_models                      # every corpus model
    python -m benchmarks.real_models --models silero_vad --frames 300 --rounds 5

For each model of `corpus.CORPUS`: fetch it, convert it as a user would (`convert_onnx`,
verified against onnxruntime; the verifier's max error is recorded), and if the result
streams, time one frame per call:

- lstm-infer: `stream.step(x)`, the state kept inside the stream;
- onnxruntime: `session.run` on one frame (the graph's time axis of length 1, or the frame
  itself for a graph that takes one frame per call) with the recurrent state passed in
  and the returned state fed to the next call (1 intra-op / 1 inter-op thread, no
  spinning, sequential: benchmarks/engines.ort_session_options).

Both engines step through the same `--frames` standard-normal frames (small integers for
integer inputs), interleaved round by round (benchmarks/timing.py); medians are medians of
the per-round medians, p99 over all calls; ratios are onnxruntime / lstm-infer (above 1:
lstm-infer is faster). Before timing, the max abs difference of every output over those
frames, streamed with the state carried, is recorded, and that of the final state (with the
state's scale: an LSTM cell state is unbounded). A model that
is unavailable, does not convert or does not stream is listed with the reason. A model
whose file has an image prelude (a CRNN, run() only) is timed per image instead: `run()` on
one image of width 320 against `session.run`, same thread settings, interleaved rounds.

Writes benchmarks/results/real_models.json and .md (not committed). Standalone rather than
a section of benchmarks/run.py: it needs the corpus (downloads) and its own models.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import numpy as np

from .timing import Job, TimingConfig, interleaved, summarize

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"silero_vad": 2.0}      # per-frame median speed-up over onnxruntime, where stated
DEFAULT_TARGET = 1.0               # every model: not slower than onnxruntime per frame


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0] if s else ''}"[:400]


class OrtFrames:
    """onnxruntime one frame per call, recurrent state fed back (as the per_step section)."""

    def __init__(self, model, meta: dict, m):
        import onnxruntime as ort

        from converters.onnx_verify import _feeds, to_layout0

        from .engines import ort_session_options
        self.meta = meta
        self.sess = ort.InferenceSession(to_layout0(model).SerializeToString(), ort_session_options(),
                                         providers=["CPUExecutionProvider"])
        self.onames = [o.name for o in self.sess.get_outputs()]
        self.dims = next(i for i in meta["inputs"] if i["name"] == meta["data_input"])["dims"]
        self.fdims = [1 if d in ("T", "B") else int(d) for d in self.dims]
        self.dtype = np.dtype(next(i for i in meta["inputs"] if i["name"] == meta["data_input"])["dtype"])
        zero = np.zeros(self.fdims, self.dtype)
        self.base = _feeds(meta, model, zero, 1, 1, np.ones(1, np.int64), None)
        self.pairs = [(st["input"], self.onames.index(st["output"])) for st in meta["state"]]
        self.input_size = m.input_size

    def frame(self, x: np.ndarray) -> np.ndarray:
        """Our per-step input (I,) -> one call's data input (T and B of size 1)."""
        return np.ascontiguousarray(x.reshape(self.fdims).astype(self.dtype))

    def new_stepper(self):
        feeds = dict(self.base)
        data = self.meta["data_input"]
        sess, pairs = self.sess, self.pairs

        def step(x):
            feeds[data] = x
            outs = sess.run(None, feeds)
            for name, k in pairs:
                feeds[name] = outs[k]
            return outs
        return step


def _frames(m, meta: dict, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(next(i for i in meta["inputs"] if i["name"] == meta["data_input"])["dtype"])
    if dt.kind in "iub":
        return rng.integers(0, 10, size=(n, m.input_size)).astype(np.float32)
    return rng.standard_normal((n, m.input_size)).astype(np.float32)


def agreement(m, ort: OrtFrames, X: np.ndarray) -> tuple[dict, dict]:
    """Max abs difference per output over the frames, streamed, and of the final state
    (with its scale: a cell state is unbounded and grows over hundreds of frames)."""
    from converters.onnx_verify import _state_value, reconstruct
    meta = ort.meta
    s = m.stream()
    f = ort.new_stepper()
    err: dict[str, float] = {}
    ones = np.ones(1, np.int64)
    outs = None
    for x in X:
        y = s.step(x)
        ys = y if isinstance(y, dict) else {meta["outputs"][0]["name"]: y}
        outs = dict(zip(ort.onames, f(ort.frame(x))))
        for entry in meta["outputs"]:
            name = entry["name"]
            got = reconstruct(np.asarray(ys[name], np.float64)[None, None], entry, ones)
            want = np.asarray(outs[name], np.float64)
            d = float(np.max(np.abs(got.reshape(want.shape) - want))) if want.size else 0.0
            err[name] = max(err.get(name, 0.0), d)
    state = {}
    for entry in meta["state"]:
        want = np.asarray(outs[entry["output"]], np.float64)
        got = _state_value([s.get_state()], entry)
        state[entry["output"]] = {"max_abs": float(np.max(np.abs(got.reshape(want.shape) - want))),
                                  "scale": float(np.max(np.abs(want)))}
    return err, state


def bench_model(cm, frames: int, timing: TimingConfig, workdir: str, log=print) -> dict:
    from . import corpus
    row = {"model": cm.name, "structure": cm.structure, "source": f"{cm.requirement}: {cm.member}"
           + (f" / {cm.inner}" if cm.inner else "")}
    try:
        path = corpus.fetch(cm.name)
    except corpus.Unavailable as e:
        return {**row, "status": "unavailable", "reason": _first_line(e)}
    import onnx

    import lstm_infer
    from converters import convert_onnx
    out = os.path.join(workdir, f"{cm.name}.lstm")
    t0 = time.perf_counter()
    try:  # as a user would: verified against onnxruntime (raises when they disagree)
        report = convert_onnx(path, out, **dict(cm.options))
    except Exception as e:  # every failure is a row of the report, never a crash of the run
        return {**row, "status": "does not convert", "reason": _first_line(e)}
    row["convert_s"] = time.perf_counter() - t0
    row["verify_max_abs_error"] = report.verify.max_abs_error
    row["verify"] = str(report.verify)
    m = lstm_infer.load(out)
    meta = m.provenance["onnx"]
    row.update(input_size=m.input_size, output_size=m.output_size, frame_call=bool(meta.get("frame_call")),
               state=[f"{s['input']}->{s['output']}" for s in meta["state"]], layers=m.summary())
    if m.graph.prelude is not None:
        return _bench_images(row, m, path, timing, log)
    if not m.streamable:
        return {**row, "status": "does not stream",
                "reason": "converted; runs whole sequences with run() only (e.g. a bidirectional "
                          "or reverse layer)"}
    if not meta["state"] and not meta.get("frame_call") and meta.get("extra_data_inputs") is not None \
            and any(n.op_type in ("LSTM", "GRU", "RNN") for n in onnx.load(path).graph.node):
        # DeepFilterNet: the recurrent state lives inside the graph, so onnxruntime has no
        # per-frame form of it to time against (only re-running a growing window)
        return {**row, "status": "streams",
                "reason": "streams; the source graph keeps its recurrent state inside, so "
                          "onnxruntime has no one-frame-per-call form to compare with"}
    try:
        ort = OrtFrames(onnx.load(path), meta, m)
        X = _frames(m, meta, frames)
        row["max_abs_error"], row["final_state_error"] = agreement(m, ort, X)
    except Exception as e:
        return {**row, "status": "onnxruntime comparison failed", "reason": _first_line(e)}
    row["max_abs_error_all"] = max(row["max_abs_error"].values(), default=0.0)
    row["frames"] = frames
    xs = [np.ascontiguousarray(x) for x in X]
    xo = [ort.frame(x) for x in X]
    jobs = [Job("lstm-infer", lambda: m.stream().step, xs, _null),
            Job("onnxruntime", ort.new_stepper, xo, _null)]
    samples = interleaved(jobs, timing)
    stats = {k: summarize(v) for k, v in samples.items()}
    for s in stats.values():
        s.pop("round_medians", None)
    base = stats["lstm-infer"]
    ratios = {k: stats["onnxruntime"][k] / base[k] for k in ("median", "p99")}
    want = TARGETS.get(cm.name, DEFAULT_TARGET)
    row.update(status="ok", stats=stats, ratios=ratios,
               target={"name": f">= {want:g}x onnxruntime per frame (median)" if want > 1 else
                       "not slower than onnxruntime per frame (median)",
                       "pass": ratios["median"] >= want, "detail": f"{ratios['median']:.2f}x"})
    log(f"  {cm.name}: lstm-infer {base['median']:.1f} us (p99 {base['p99']:.1f}), onnxruntime "
        f"{stats['onnxruntime']['median']:.1f} us (p99 {stats['onnxruntime']['p99']:.1f}): "
        f"{ratios['median']:.2f}x median, {ratios['p99']:.2f}x p99; max abs error "
        f"{row['max_abs_error_all']:.2e}")
    return row


IMAGE_WIDTH = 320  # PP-OCR's recogniser input width (rec_image_shape 3,32,320)


def _bench_images(row: dict, m, path: str, timing: TimingConfig, log) -> dict:
    """A model with an image prelude runs whole images with run() only: time run() on one
    image against session.run on the same image (the per-frame columns stay empty)."""
    import onnxruntime as ort

    from .engines import ort_session_options
    pre = m.graph.prelude
    row = {**row, "status": "run() only",
           "reason": "converted; whole-image CNN prelude, so it does not stream (no per-frame "
                     f"figures); run() on one {pre.channels}x{pre.height}x{IMAGE_WIDTH} image "
                     "vs onnxruntime session.run"}
    x = np.random.default_rng(0).uniform(-1, 1, (1, pre.channels, pre.height, IMAGE_WIDTH)
                                         ).astype(np.float32)
    sess = ort.InferenceSession(path, ort_session_options(), providers=["CPUExecutionProvider"])
    name = m.provenance["onnx"]["prelude"]["image_input"]
    ref = sess.run(None, {name: x})[0]
    row["max_abs_error_all"] = float(np.max(np.abs(m.run(x) - ref)))
    cfg = TimingConfig(rounds=timing.rounds, budget_s=1.0, min_calls=5, max_calls=200,
                       warmup_s=0.2, warmup_calls=3)
    jobs = [Job("lstm-infer", lambda: m.run, [x], _null),
            Job("onnxruntime", lambda: (lambda a: sess.run(None, {name: a})), [x], _null)]
    stats = {k: summarize(v) for k, v in interleaved(jobs, cfg).items()}
    for st in stats.values():
        st.pop("round_medians", None)
    ratio = stats["onnxruntime"]["median"] / stats["lstm-infer"]["median"]
    row.update(run_stats=stats, run_ratio=ratio)
    log(f"  {row['model']}: run() {stats['lstm-infer']['median'] / 1e3:.1f} ms vs onnxruntime "
        f"{stats['onnxruntime']['median'] / 1e3:.1f} ms per image: {ratio:.2f}x; max abs error "
        f"{row['max_abs_error_all']:.1e}")
    return row


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def markdown(res: dict) -> str:
    env = res["meta"]["environment"]
    lines = ["# Real models: one frame per call, lstm-infer vs onnxruntime", "",
             f"CPU: {env.get('cpu_model')} ({env.get('cpu_affinity')} usable cores); "
             f"onnxruntime {env['versions'].get('onnxruntime')}, numba {env['versions'].get('numba')}; "
             f"{res['meta']['started']}", "",
             "Per frame: lstm-infer `stream.step(x)` vs onnxruntime `session.run` with the state "
             "passed in and out (1 intra-op / 1 inter-op thread). Ratio = onnxruntime / lstm-infer "
             "(above 1: lstm-infer is faster). Error: max abs difference of the outputs over all "
             "frames streamed; final state: max abs difference / largest value.", "",
             "| model | status | lstm-infer median / p99 (µs) | onnxruntime median / p99 (µs) "
             "| ratio median | ratio p99 | max abs error | final state | target |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        if r.get("run_stats"):
            a, o = r["run_stats"]["lstm-infer"], r["run_stats"]["onnxruntime"]
            lines.append(f"| {r['model']} | {r['status']}: {r['reason']}: {a['median'] / 1e3:.1f} ms "
                         f"vs {o['median'] / 1e3:.1f} ms, {r['run_ratio']:.2f}x (max abs error "
                         f"{r['max_abs_error_all']:.1e}) | | | | | | | |")
            continue
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['status']}: {r.get('reason', '')} | | | | | | | |")
            continue
        a, o = r["stats"]["lstm-infer"], r["stats"]["onnxruntime"]
        t = r["target"]
        st = ", ".join(f"{k} {v['max_abs']:.1e} / {v['scale']:.2g}" for k, v in r["final_state_error"].items())
        lines.append(f"| {r['model']} | ok{' (frame per call)' if r.get('frame_call') else ''} "
                     f"| {a['median']:.1f} / {a['p99']:.1f} | {o['median']:.1f} / {o['p99']:.1f} "
                     f"| {r['ratios']['median']:.2f}x | {r['ratios']['p99']:.2f}x "
                     f"| {r['max_abs_error_all']:.1e} | {st or '-'} | {t['name']}: "
                     f"{'pass' if t['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def run(models: list[str] | None = None, frames: int = 300, timing: TimingConfig | None = None,
        log=print) -> dict:
    from . import corpus
    from .run import environment
    timing = timing or TimingConfig(rounds=5, budget_s=0.3, min_calls=200, max_calls=3000,
                                    warmup_s=0.2, warmup_calls=200)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    res = {"meta": {"started": started, "argv": sys.argv, "environment": environment(),
                    "frames": frames, "timing": timing.__dict__}, "rows": []}
    chosen = [cm for cm in corpus.CORPUS if not models or cm.name in models]
    with tempfile.TemporaryDirectory(prefix="lstm-infer-real-") as d:
        for cm in chosen:
            log(f"[{cm.name}]")
            row = bench_model(cm, frames, timing, d, log)
            if row["status"] != "ok":
                log(f"  {row['status']}: {row.get('reason', '')}")
            res["rows"].append(row)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.real_models", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated corpus names (default: all)")
    ap.add_argument("--frames", type=int, default=300, help="frames stepped (and cycled when timing)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    timing = TimingConfig(rounds=args.rounds, budget_s=0.3, min_calls=200, max_calls=3000,
                          warmup_s=0.2, warmup_calls=200)
    models = [s.strip() for s in args.models.split(",") if s.strip()] or None
    res = run(models, args.frames, timing)
    os.makedirs(args.out_dir, exist_ok=True)
    jp = os.path.join(args.out_dir, "real_models.json")
    with open(jp, "w") as f:
        json.dump(res, f, indent=1, default=float)
    mp = os.path.join(args.out_dir, "real_models.md")
    with open(mp, "w") as f:
        f.write(markdown(res))
    print(f"\nwrote {jp}, {mp}")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
