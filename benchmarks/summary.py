"""Every figure the README quotes, computed from the recorded result files, and the README
blocks that quote them.

    python -m benchmarks.summary                 # the README blocks, as they should read
    python -m benchmarks.summary --figures       # each figure with the result field it comes from
    python -m benchmarks.summary --write-readme  # rewrite the blocks in README.md in place
    python -m benchmarks.summary --check         # exit 1 if README.md's blocks are out of date

Sources: benchmarks/results/latest.json (`python -m benchmarks.run`, full suite) and
benchmarks/results/compression.json (`python -m benchmarks.compression`). In README.md each
generated block sits between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->`; after a
new benchmark run, `--write-readme` brings the README's numbers up to date, and
tests/test_readme_figures.py fails until it has been run. Ratios are always *other engine's
time / lstm-infer's time* (above 1x lstm-infer is faster) and always name the other engine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LATEST = os.path.join(HERE, "results", "latest.json")
COMPRESSION = os.path.join(HERE, "results", "compression.json")
REAL_MODELS = os.path.join(HERE, "results", "real_models.json")
AVX2 = os.path.join(HERE, "results", "avx2.json")
README = os.path.join(ROOT, "README.md")

class MissingFigure(KeyError):
    pass


# --------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------
def t3(v: float) -> str:
    """A time or size: 3 significant digits, thousands separated."""
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def rx(v: float) -> str:
    """A ratio: 4.28x, 17.6x, 0.26x, 1,035x."""
    return f"{v:,.0f}x" if v >= 100 else f"{v:.1f}x" if v >= 10 else f"{v:.2f}x"


def err(v: float) -> str:
    return f"{v:.2e}".replace("e-0", "e-")


def rng(vals) -> str:
    """A range of ratios: 1.13-7.93x (one value when both ends round alike)."""
    a, b = rx(min(vals)), rx(max(vals))
    return a if a == b else f"{a[:-1]}-{b}"


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------
class Figures:
    """name -> (formatted value, source field); `f[name]` gives the formatted value."""

    def __init__(self):
        self.items: dict[str, tuple[str, str]] = {}
        self.used: list[str] = []

    def add(self, name: str, value: str, source: str) -> None:
        self.items[name] = (value, source)

    def __getitem__(self, name: str) -> str:
        if name not in self.used:
            self.used.append(name)
        return self.items[name][0]

    def __contains__(self, name: str) -> bool:
        return name in self.items

    def listing(self, used_only: bool = True) -> str:
        names = self.used if used_only else list(self.items)
        w = max(len(k) for k in names)
        return "\n".join(f"{k:<{w}}  {self.items[k][0]:>12}  <- {self.items[k][1]}" for k in names)


def _row(sec: dict, section: str, label: str, **match) -> dict:
    for r in sec["rows"]:
        if r["model"]["label"] == label and all(r.get(k) == v for k, v in match.items()):
            if "stats" not in r:
                raise MissingFigure(f"{section} {label} {match}: not timed (agreement check failed)")
            return r
    raise MissingFigure(f"latest.json has no {section} row {label} {match}: was it a full run?")


def _where(section: str, label: str, **match) -> str:
    m = "".join(f", {k}={v}" for k, v in match.items())
    return f"latest.json sections.{section}.rows[{label}{m}]"


def _ratios(rows, engine):
    return [r["ratios"][engine]["median"] for r in rows]


def figures(latest: dict, compression: dict | None) -> Figures:
    f = Figures()
    S = latest["sections"]
    env = latest["meta"]["environment"]
    f.add("cpu_cores", str(env["cpu_count"]), "latest.json meta.environment.cpu_count")
    f.add("cpu_model", env["cpu_model"], "latest.json meta.environment.cpu_model")

    # per step ---------------------------------------------------------------------------
    ps = S["per_step"]
    for label, key in (("LSTM 1L (1,8)", "s8"), ("LSTM 1L (1,32)", "s32"), ("LSTM 1L (16,64)", "s64")):
        r = _row(ps, "per_step", label)
        src = _where("per_step", label)
        f.add(f"{key}_li", t3(r["stats"]["lstm-infer"]["median"]), f"{src}.stats.lstm-infer.median")
        f.add(f"{key}_li_p99", t3(r["stats"]["lstm-infer"]["p99"]), f"{src}.stats.lstm-infer.p99")
        for e in ("onnxruntime", "torch-cell"):
            f.add(f"{key}_{e}", t3(r["stats"][e]["median"]), f"{src}.stats.{e}.median")
            f.add(f"{key}_{e}_x", rx(r["ratios"][e]["median"]), f"{src}.ratios.{e}.median")
    rows = [r for r in ps["rows"] if "stats" in r]
    allsrc = "latest.json sections.per_step.rows[*]"
    f.add("ps_models", str(len(ps["rows"])), "latest.json len(sections.per_step.rows)")
    shapes = sorted({(r["model"]["hidden_size"], r["model"]["input_size"]) for r in rows})
    f.add("ps_shapes", f"({shapes[0][1]},{shapes[0][0]}) to ({shapes[-1][1]},{shapes[-1][0]})",
          f"{allsrc}.model: smallest and largest (input_size, hidden_size)")
    f.add("ps_ops", " and ".join(sorted({r["model"]["op"] for r in rows}, key=["LSTM", "GRU", "RNN"].index)),
          f"{allsrc}.model.op")
    f.add("ps_layers", " and ".join(str(n) for n in sorted({r["model"]["layers"] for r in rows})),
          f"{allsrc}.model.layers")
    for e in ("onnxruntime", "torch-cell"):
        f.add(f"ps_{e}_x", rng(_ratios(rows, e)), f"{allsrc}.ratios.{e}.median, min-max")
        hi = max(rows, key=lambda r: r["ratios"][e]["median"])
        lo = min(rows, key=lambda r: r["ratios"][e]["median"])
        f.add(f"ps_{e}_x_max_at", hi["model"]["label"], f"{allsrc}: the row with the largest ratios.{e}.median")
        f.add(f"ps_{e}_x_min_at", lo["model"]["label"], f"{allsrc}: the row with the smallest ratios.{e}.median")
    for tname, key in (("faster than onnxruntime step and PyTorch cells", "faster"),
                       (">= 10x onnxruntime step and PyTorch cells", "10x")):
        tr = [r for r in rows for t in r.get("targets", []) if t["name"] == tname]
        passed = sum(t["pass"] for r in tr for t in r["targets"] if t["name"] == tname)
        f.add(f"target_{key}", f"{passed}/{len(tr)}", f"{allsrc}.targets[{tname!r}].pass, count")
        if key == "10x":
            for e in ("onnxruntime", "torch-cell"):
                f.add(f"target_10x_{e}_x", rng(_ratios(tr, e)),
                      f"{allsrc} with that target: .ratios.{e}.median, min-max")
    f.add("target_10x_hidden", str(max(r["model"]["hidden_size"] for r in rows
                                       for t in r.get("targets", []) if t["name"].startswith(">= 10x"))),
          f"{allsrc} with the 10x target: max model.hidden_size")

    # chunk ------------------------------------------------------------------------------
    ch = S["chunk"]
    big = max(r["chunk"] for r in ch["rows"])
    f.add("chunk_len", str(big), "latest.json max(sections.chunk.rows[*].chunk)")
    c8 = _row(ch, "chunk", "LSTM 1L (1,8)", chunk=big)
    f.add("c8_li", t3(c8["stats"]["lstm-infer"]["median"]),
          f"{_where('chunk', 'LSTM 1L (1,8)', chunk=big)}.stats.lstm-infer.median")
    crows = [r for r in ch["rows"] if r["chunk"] == big and "stats" in r]
    f.add("chunk_models", str(len(crows)), f"latest.json sections.chunk.rows[chunk={big}], count")
    for e in ("onnxruntime", "torch-rnn"):
        f.add(f"chunk_{e}_x", rng(_ratios(crows, e)),
              f"latest.json sections.chunk.rows[chunk={big}].ratios.{e}.median, min-max")
        f.add(f"chunk_{e}_ahead", str(sum(x < 1 for x in _ratios(crows, e))),
              f"latest.json sections.chunk.rows[chunk={big}]: count of ratios.{e}.median < 1")

    # throughput -------------------------------------------------------------------------
    tp = S["throughput"]
    for B in sorted({r["batch"] for r in tp["rows"]}):
        brows = [r for r in tp["rows"] if r["batch"] == B and "stats" in r]
        f.add(f"tp_b{B}_rows", str(len(brows)), f"latest.json sections.throughput.rows[batch={B}], count")
        for e in ("onnxruntime", "torch-rnn"):
            f.add(f"tp_b{B}_{e}_x", rng(_ratios(brows, e)),
                  f"latest.json sections.throughput.rows[batch={B}].ratios.{e}.median, min-max")

    # streams ----------------------------------------------------------------------------
    st = S["streams"]
    n_max = max(r["streams"] for r in st["rows"])
    f.add("streams_n", f"{n_max:,}", "latest.json max(sections.streams.rows[*].streams)")
    for op in ("LSTM", "GRU"):
        r = _row(st, "streams", f"{op} 1L (16,64)", streams=n_max)
        f.add(f"streams_{op}_torch-cell_x", rx(r["ratios"]["torch-cell"]["median"]),
              f"{_where('streams', f'{op} 1L (16,64)', streams=n_max)}.ratios.torch-cell.median")

    # start-up ---------------------------------------------------------------------------
    su = S["startup"]
    f.add("startup_model", su["model"]["label"], "latest.json sections.startup.model.label")

    def srow(engine, cache):
        for r in su["rows"]:
            if r["engine"] == engine and r["cache"] == cache:
                return r
        raise MissingFigure(f"latest.json has no startup row {engine}/{cache}")

    src = "latest.json sections.startup.rows"
    for engine, cache, key in (("lstm-infer", "warm", "warm"), ("onnxruntime", "warm", "ort"),
                               ("torch", "warm", "torch"), ("lstm-infer", "empty", "cold")):
        r = srow(engine, cache)
        f.add(f"startup_{key}_s", t3(r["first_output_s"]["median"]),
              f"{src}[{engine}, {cache}].first_output_s.median")
    w = srow("lstm-infer", "warm")
    f.add("startup_import_ms", t3(w["import_s"]["median"] * 1e3), f"{src}[lstm-infer, warm].import_s.median")
    f.add("startup_load_ms", t3(w["load_s"]["median"] * 1e3), f"{src}[lstm-infer, warm].load_s.median")
    if w.get("peak_rss_mib"):
        f.add("startup_rss_mib", t3(w["peak_rss_mib"]["median"]), f"{src}[lstm-infer, warm].peak_rss_mib.median")

    # accuracy ---------------------------------------------------------------------------
    ac = S["accuracy"]
    f.add("acc_models", str(len(ac["rows"])), "latest.json len(sections.accuracy.rows)")
    f.add("acc_T", str(ac["rows"][0]["T"]), "latest.json sections.accuracy.rows[0].T")
    for e, key in (("lstm-infer", "li"), ("onnxruntime", "ort"), ("torch-cell", "tc"), ("torch-rnn", "tr")):
        f.add(f"acc_{key}", err(max(r["max_abs_error"][e] for r in ac["rows"])),
              f"latest.json max(sections.accuracy.rows[*].max_abs_error.{e})")
    f.add("acc_li_all_paths", err(max(v for r in ac["rows"] for k, v in r["max_abs_error"].items()
                                      if k.startswith("lstm-infer"))),
          "latest.json max(sections.accuracy.rows[*].max_abs_error.lstm-infer*) (step, step_many, run)")
    ag = latest["agreement"]
    f.add("agree_checks", f"{sum(c['passed'] for c in ag['checks'])}/{len(ag['checks'])}",
          "latest.json agreement.checks[*].passed, count")
    f.add("agree_max", err(max(c["max_abs_diff"] for c in ag["checks"])),
          "latest.json max(agreement.checks[*].max_abs_diff)")

    _variant_figures(f, S)

    # compression ------------------------------------------------------------------------
    if compression is not None:
        models = compression["models"]
        ratio = [m["dtypes"]["fp32"]["file_bytes"] / m["dtypes"]["int8"]["file_bytes"] for m in models]
        f.add("int8_file_x", rng(ratio), "compression.json models[*].dtypes: fp32.file_bytes / int8.file_bytes, "
                                         "min-max")
        f.add("int8_models", str(len(models)), "compression.json len(models)")
        big_m = next((m for m in models if m["model"] == "LSTM (256, 512) + Linear"), None)
        if big_m is None:
            raise MissingFigure("compression.json has no 'LSTM (256, 512) + Linear' row")
        d = big_m["dtypes"]
        src = "compression.json models[LSTM (256, 512) + Linear].dtypes"
        for dt in ("fp32", "int8"):
            f.add(f"big_{dt}_file_kib", f"{d[dt]['file_bytes'] / 1024:,.0f}", f"{src}.{dt}.file_bytes / 1024")
            f.add(f"big_{dt}_rss_kib", f"{d[dt]['resident_bytes'] / 1024:,.0f}", f"{src}.{dt}.resident_bytes / 1024")
            f.add(f"big_{dt}_step_us", t3(d[dt]["step_us"]), f"{src}.{dt}.step_us")
        ex = compression["example_model"]
        f.add("ex_steps", f"{ex['steps']:,}", "compression.json example_model.steps")
        f.add("ex_int8_agree", f"{ex['int8']['flag_agreement'] * 100:.2f}%",
              "compression.json example_model.int8.flag_agreement")
        f.add("ex_fp32_flags", str(ex["fp32_flags"]), "compression.json example_model.fp32_flags")
        f.add("ex_int8_flags", str(ex["int8"]["flags"]), "compression.json example_model.int8.flags")
    return f


def _variant_figures(f: Figures, S: dict) -> None:
    """The seeds' variants (benchmarks/variants.py), when the run had those sections."""
    for sec, key, engine in (("xlstm", "xl", "xlstm-package"), ("convlstm", "cl", "torch-convlstm")):
        if sec in S:
            r = S[sec]["rows"][0]
            if "stats" not in r:
                raise MissingFigure(f"{sec}: not timed (agreement check failed)")
            src = f"latest.json sections.{sec}.rows[0]"
            f.add(f"{key}_li", t3(r["stats"]["lstm-infer"]["median"]), f"{src}.stats.lstm-infer.median")
            f.add(f"{key}_other", t3(r["stats"][engine]["median"]), f"{src}.stats.{engine}.median")
            f.add(f"{key}_x", rx(r["ratios"][engine]["median"]), f"{src}.ratios.{engine}.median")
    if "attention" in S:
        rows = [r for r in S["attention"]["rows"] if "stats" in r]
        f.add("att_li", rng([r["stats"]["lstm-infer"]["median"] for r in rows]).rstrip("x"),
              "latest.json sections.attention.rows[*].stats.lstm-infer.median, min-max")
        f.add("att_x", rng(_ratios(rows, "torch-prefix")),
              "latest.json sections.attention.rows[*].ratios.torch-prefix.median, min-max")
    if "keras" in S:
        rows = [r for r in S["keras"]["rows"] if "stats" in r]
        for e in ("keras-predict", "keras-call"):
            f.add(f"keras_{e}_x", rng(_ratios(rows, e)),
                  f"latest.json sections.keras.rows[*].ratios.{e}.median, min-max")


def _variant_bullets(f: Figures) -> list[str]:
    out = []
    if "xl_x" in f:
        out.append(f"* **xLSTM** (4-block mLSTM/sLSTM stack, d=64): `step()` {f['xl_li']} µs against "
                   f"the xlstm package's own `step()` {f['xl_other']} µs ({f['xl_x']}).")
    if "att_x" in f:
        out.append(f"* **Attention** (attention pooling, causal multi-head self-attention over a "
                   f"window of 64): `step()` {f['att_li']} µs at steps 64 and 1,024, "
                   f"{f['att_x']} against PyTorch re-running the model on the growing prefix.")
    if "cl_x" in f:
        out.append(f"* **ConvLSTM2D** (64x64x1 frames, 16 filters, 3x3): `step()` {f['cl_li']} µs "
                   f"per frame against the PyTorch cell loop's {f['cl_other']} µs ({f['cl_x']}).")
    if "keras_keras-predict_x" in f:
        out.append(f"* **Keras** LSTM/GRU models: `step()` is {f['keras_keras-predict_x']} faster "
                   f"than Keras `predict()` on one step and {f['keras_keras-call_x']} faster than "
                   "calling the model directly (Keras 3, torch backend).")
    return out


# --------------------------------------------------------------------------------------
# README blocks
# --------------------------------------------------------------------------------------
def _table(latest: dict, f: Figures) -> str:
    S = latest["sections"]
    big = int(f["chunk_len"])

    def cell(section, label, engine, **match):
        try:
            r = _row(S[section], section, label, **match)
        except MissingFigure:
            return "n/a"
        src = _where(section, label, **match)
        key = f"table {section} {label}{''.join(f' {k}={v}' for k, v in match.items())} {engine}"
        f.add(key, t3(r["stats"][engine]["median"]), f"{src}.stats.{engine}.median")
        if engine == "lstm-infer":
            return f[key]
        f.add(key + " x", rx(r["ratios"][engine]["median"]), f"{src}.ratios.{engine}.median")
        return f"{f[key]} ({f[key + ' x']})"

    out = [f"Medians on this {f['cpu_cores']}-core machine, PyTorch and onnxruntime on 1 thread; in "
           "brackets: the other engine's time / lstm-infer's time (above 1x lstm-infer is faster). "
           "Full tables: [benchmarks/results/latest.md](benchmarks/results/latest.md).", "",
           "| LSTM 1 layer + Linear, (input, hidden) | step() from Python, µs: lstm-infer | onnxruntime "
           f"per-step run | PyTorch LSTMCell+Linear | chunk of {big:,}, µs/step: lstm-infer `step_many` | "
           "onnxruntime sequence |",
           "|---|---|---|---|---|---|"]
    for shp in ("(1,8)", "(16,64)", "(64,128)", "(128,256)", "(256,512)"):
        label = f"LSTM 1L {shp}"
        out.append(f"| {shp} | {cell('per_step', label, 'lstm-infer')} | {cell('per_step', label, 'onnxruntime')} "
                   f"| {cell('per_step', label, 'torch-cell')} | {cell('chunk', label, 'lstm-infer', chunk=big)} "
                   f"| {cell('chunk', label, 'onnxruntime', chunk=big)} |")
    return "\n".join(out)


def _wrap(text: str, width: int = 92) -> str:
    """Hard-wrap prose like the rest of README.md: paragraphs, and bullets with a hanging
    indent; table rows and blank lines are left alone."""
    out = []
    text = _UNIT.sub(lambda m: m.group(1) + "\0" + m.group(2), text)  # keep "24.0 s" on one line
    for line in text.split("\n"):
        if not line or line.startswith("|"):
            out.append(line)
        elif line.startswith("* "):
            out.append(textwrap.fill(line, width, subsequent_indent="  ", break_long_words=False,
                                     break_on_hyphens=False))
        else:
            out.append(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False))
    return "\n".join(out).replace("\0", " ")


_UNIT = re.compile(r"(\d) (µs|ms|s|KiB|MiB|MB|models|steps|flags)\b")


def blocks(latest: dict, compression: dict | None, real_models_path: str = REAL_MODELS,
           avx2_path: str = AVX2) -> dict[str, str]:
    out = _blocks(figures(latest, compression), latest)
    if real_models_path and os.path.exists(real_models_path):
        with open(real_models_path) as fh:
            out["models"] = models_table(json.load(fh))
    if avx2_path and os.path.exists(avx2_path):
        with open(avx2_path) as fh:
            out["avx2"] = _wrap(avx2_block(json.load(fh)))
    return out


def target_counts(res: dict) -> list[tuple[str, str, int, int]]:
    """(section, target, rows passed, rows) for every target of a benchmarks.run result."""
    counts: dict[tuple[str, str], list[int]] = {}
    for name, sec in res["sections"].items():
        targets = [t for row in sec.get("rows", []) for t in (row.get("targets") or [])]
        for t in targets + list(sec.get("targets", [])):
            c = counts.setdefault((name, t["name"]), [0, 0])
            c[0] += bool(t["pass"])
            c[1] += 1
    return [(sec, name, p, n) for (sec, name), (p, n) in counts.items()]


def avx2_block(res: dict) -> str:
    """The targets of the run with lstm-infer compiled for AVX2 only (`--isa avx2`)."""
    isa = res["meta"]["environment"].get("isa", {})
    if isa.get("requested") != "avx2":
        raise ValueError("avx2.json is not a `python -m benchmarks.run --isa avx2` result")
    env = res["meta"]["environment"]
    commit = env.get("git", {}).get("commit", "")[:7]
    parts = [f"{name} ({sec}): {p}/{n}" for sec, name, p, n in target_counts(res)]
    return (f"With lstm-infer's kernels compiled for AVX2 only (`python -m benchmarks.run --isa "
            f"avx2`, the same {env['cpu_count']}-core {env['cpu_model']}, commit {commit}: Numba "
            f"targets Haswell with the AVX-512 features off, PyTorch is capped at "
            f"{isa.get('torch', 'AVX2')}, onnxruntime keeps AVX-512 because it has no switch), "
            f"targets met, rows passed / rows: " + "; ".join(parts) + ". Every row in "
            "[benchmarks/results/avx2.md](benchmarks/results/avx2.md).")


def models_table(real: dict) -> str:
    """README's "Models known to convert" table from benchmarks/results/real_models.json
    (`python -m benchmarks.real_models`): every corpus model, converted as a user would
    (verified against onnxruntime), with its per-frame speed against onnxruntime where it
    streams, or why it does not convert."""
    from .corpus import BY_NAME
    lines = ["| model | package | structure | max abs error vs onnxruntime | per frame vs onnxruntime |",
             "| --- | --- | --- | --- | --- |"]
    for r in real["rows"]:
        cm = BY_NAME.get(r["model"])
        pkg = f"`{cm.requirement}`" if cm else ""
        structure = r.get("structure", "")
        if r["status"] in ("unavailable", "does not convert"):
            reason = r.get("reason", "").replace("|", "/")
            lines.append(f"| {r['model']} | {pkg} | {structure} | {r['status']}: {reason[:160]} | |")
            continue
        error = err(r["verify_max_abs_error"]) if "verify_max_abs_error" in r else ""
        if r["status"] == "ok":
            speed = (f"{rx(r['ratios']['median'])} faster (median {t3(r['stats']['lstm-infer']['median'])} "
                     f"vs {t3(r['stats']['onnxruntime']['median'])} µs)")
        elif r["status"] == "streams":
            speed = "streams; no per-frame onnxruntime form (state inside the graph)"
        elif "run_ratio" in r:  # an image model: whole images through run() only
            st = r["run_stats"]
            speed = (f"run() only (whole-image CNN prelude): run() on one image "
                     f"{rx(r['run_ratio'])} onnxruntime's speed ({t3(st['lstm-infer']['median'] / 1e3)} "
                     f"vs {t3(st['onnxruntime']['median'] / 1e3)} ms)")
        else:
            speed = "run() only: " + ("bidirectional, does not stream" if r["status"] == "does not stream"
                                      else r["status"])
        lines.append(f"| {r['model']} | {pkg} | {structure} | {error} | {speed} |")
    env = real["meta"]["environment"]
    lines += ["", f"From `benchmarks/results/real_models.json` ({real['meta']['started'][:10]}, "
              f"{env.get('cpu_model')}, 1 thread per engine): per frame, `stream.step(x)` against "
              "onnxruntime's `session.run` with the state passed in and out; the error is the "
              "conversion's verification against onnxruntime (relative to an output's scale where "
              "it exceeds 1)."]
    return "\n".join(lines)


def quoted(latest: dict, compression: dict | None) -> Figures:
    """The figures, with `used` listing those the README blocks quote, in order."""
    f = figures(latest, compression)
    _blocks(f, latest)
    return f


def _blocks(f: Figures, latest: dict) -> dict[str, str]:
    why = (
        "**Why:** ONNX Runtime and PyTorch pay their framework overhead on every call and keep no "
        "state between calls, so a per-sample loop pays that overhead on every sample and has to "
        "pass `h`/`c` in and out itself: on the smallest benchmark model (LSTM 1→8 + Linear), "
        f"where the arithmetic is negligible, one onnxruntime `session.run` takes {f['s8_onnxruntime']} µs "
        f"and one PyTorch `LSTMCell`+`Linear` step {f['s8_torch-cell']} µs. lstm-infer compiles the "
        "whole model into one Numba call per step that updates its state in place and allocates "
        f"nothing: {f['s8_li']} µs per step on that model. A model of the bundled demo's shape "
        f"(LSTM 1→32 + Linear) takes **{f['s32_li']} µs per step from Python** (p99 "
        f"{f['s32_li_p99']} µs; `make demo` prints its own figure); LSTM(16→64)+Linear takes "
        f"{f['s64_li']} µs, {f['s64_onnxruntime_x']} faster than onnxruntime's per-step `run` and "
        f"{f['s64_torch-cell_x']} faster than PyTorch's `LSTMCell` (medians on this "
        f"{f['cpu_cores']}-core machine, measured side by side: see [Benchmarks](#benchmarks)). "
        f"lstm-infer's outputs are within {f['acc_li_all_paths']} of a float64 reference in that run, "
        "and every conversion is verified against its source framework.")

    standing = "\n".join([
        "Ratios below are the other engine's time / lstm-infer's time (above 1x lstm-infer is "
        "faster), medians, each against the engine named:", "",
        f"* **One step from Python** (the sensor-loop case this project is for): faster than both "
        f"onnxruntime and PyTorch cells on {f['target_faster']} models ({f['ps_ops']}, "
        f"{f['ps_layers']} layers, (input, hidden) from {f['ps_shapes']}): against onnxruntime's "
        "per-step `run` "
        f"{f['ps_onnxruntime_x']} ({f['ps_onnxruntime_x_min_at']} to {f['ps_onnxruntime_x_max_at']}), "
        f"against PyTorch `LSTMCell`/`GRUCell` + `Linear` {f['ps_torch-cell_x']} "
        f"({f['ps_torch-cell_x_min_at']} to {f['ps_torch-cell_x_max_at']}). The 10x target (against both, "
        f"on the models with hidden size up to {f['target_10x_hidden']}) is met on "
        f"{f['target_10x']}: on those models lstm-infer is {f['target_10x_onnxruntime_x']} faster "
        f"than onnxruntime and {f['target_10x_torch-cell_x']} faster than PyTorch cells. Much of "
        f"what remains is the Python call: on LSTM 1→8, `step()` takes {f['s8_li']} µs against "
        f"{f['c8_li']} µs per step inside a {int(f['chunk_len']):,}-step `step_many` chunk.",
        f"* **Long chunks** (`step_many` on {int(f['chunk_len']):,} steps, {f['chunk_models']} "
        f"models): {f['chunk_onnxruntime_x']} against onnxruntime's sequence kernel (onnxruntime "
        f"is faster on {f['chunk_onnxruntime_ahead']} of them) and {f['chunk_torch-rnn_x']} against "
        f"PyTorch `nn.LSTM`/`nn.GRU` (PyTorch is faster on {f['chunk_torch-rnn_ahead']}). Each "
        "step's recurrent mat-vec reads all of W_hh from cache; from hidden 128 that read runs at "
        "about this machine's L2/L3 read rate (the GB/s column of the full tables).",
        f"* **Whole sequences** (`run()`): batch 1, {f['tp_b1_onnxruntime_x']} against onnxruntime "
        f"and {f['tp_b1_torch-rnn_x']} against PyTorch `nn.LSTM`/`nn.GRU`; batch 32, "
        f"{f['tp_b32_onnxruntime_x']} against onnxruntime and {f['tp_b32_torch-rnn_x']} against "
        "PyTorch. Batched `run()` and `streams(n)` share each weight load across four streams; "
        f"`streams(n).step` at n={f['streams_n']}, hidden 64: {f['streams_LSTM_torch-cell_x']} (LSTM) "
        f"and {f['streams_GRU_torch-cell_x']} (GRU) against PyTorch batched cells.",
        f"* **Start-up** ({f['startup_model']}): {f['startup_warm_s']} s from a fresh process to "
        f"the first output with a warm kernel cache (onnxruntime {f['startup_ort_s']} s, PyTorch "
        f"{f['startup_torch_s']} s); an empty cache compiles for {f['startup_cold_s']} s, which "
        "`lstm-infer compile` moves to image-build time.",
    ] + ([
        f"* **int8 weights** make memory-bound steps faster: LSTM(256→512)+Linear `step()` "
        f"{f['big_fp32_step_us']} µs with fp32 weights, {f['big_int8_step_us']} µs with int8 "
        "([compression.md](benchmarks/results/compression.md)).",
    ] if "big_int8_step_us" in f else []) + _variant_bullets(f) + [
        f"* **Accuracy** (max abs error against a float64 PyTorch reference, {f['acc_models']} models, "
        f"{f['acc_T']} steps): lstm-infer {f['acc_li_all_paths']} (`step`, `step_many` and `run`), "
        f"onnxruntime {f['acc_ort']}, PyTorch float32 cells {f['acc_tc']}, `nn.LSTM`/`nn.GRU` "
        f"{f['acc_tr']}. Before timing, all engines agreed pairwise within {f['agree_max']} "
        f"({f['agree_checks']} checks).",
    ])

    rss = (f", peak resident memory {f['startup_rss_mib']} MiB (mostly Numba/LLVM; the model's "
           "weights come on top)") if "startup_rss_mib" in f else ""
    deploying = "\n".join([
        f"* Start-up, measured by the benchmark suite ({f['startup_model']}): with a warm kernel "
        f"cache a fresh process reaches its first output in {f['startup_warm_s']} s (importing "
        f"lstm_infer {f['startup_import_ms']} ms, load with kernel warm-up {f['startup_load_ms']} ms"
        f"{rss}); with an empty cache it takes {f['startup_cold_s']} s, nearly all of it compiling.",
    ] + ([
        f"* int8 files are {f['int8_file_x']} smaller than fp32 ({f['int8_models']} models in "
        f"[compression.md](benchmarks/results/compression.md)); LSTM 256→512 + Linear: "
        f"{f['big_fp32_file_kib']} → {f['big_int8_file_kib']} KiB file, {f['big_fp32_rss_kib']} → "
        f"{f['big_int8_rss_kib']} KiB resident after loading (the resident figures of the small "
        "models are within the measurement's noise). On the bundled example model int8 raises the "
        f"same anomaly flags as fp32 on {f['ex_int8_agree']} of {f['ex_steps']} streamed steps "
        f"({f['ex_int8_flags']} flags; fp32 {f['ex_fp32_flags']}).",
    ] if "int8_file_x" in f else []))
    return {"why": _wrap(why), "table": _wrap(_table(latest, f)), "standing": _wrap(standing),
            "deploying": _wrap(deploying)}


# --------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------
_BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(\n<!-- /figures:(?P=name) -->)", re.S)


def load(latest_path: str = LATEST, compression_path: str = COMPRESSION) -> tuple[dict, dict | None]:
    with open(latest_path) as fh:
        latest = json.load(fh)
    compression = None
    if compression_path and os.path.exists(compression_path):
        with open(compression_path) as fh:
            compression = json.load(fh)
    return latest, compression


def render_readme(text: str, new: dict[str, str]) -> str:
    """README text with every generated block replaced; every block must be known."""
    found = set()

    def sub(m):
        name = m.group("name")
        if name not in new:
            raise KeyError(f"README block {name!r} is not generated by benchmarks.summary")
        found.add(name)
        return m.group(1) + new[name] + m.group(4)

    out = _BLOCK.sub(sub, text)
    missing = set(new) - found
    if missing:
        raise KeyError(f"README.md lacks the generated block(s) {sorted(missing)}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.summary", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figures", action="store_true", help="list every figure and its source field")
    ap.add_argument("--write-readme", action="store_true", help="rewrite README.md's generated blocks")
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md's blocks are out of date")
    ap.add_argument("--latest", default=LATEST)
    ap.add_argument("--compression", default=COMPRESSION)
    ap.add_argument("--readme", default=README)
    args = ap.parse_args(argv)
    latest, compression = load(args.latest, args.compression)
    if args.figures:
        print(quoted(latest, compression).listing())
        return 0
    new = blocks(latest, compression)
    if args.write_readme or args.check:
        with open(args.readme) as fh:
            text = fh.read()
        updated = render_readme(text, new)
        if args.check:
            if updated != text:
                print(f"{args.readme} quotes figures that differ from {args.latest}: run "
                      "`python -m benchmarks.summary --write-readme`", file=sys.stderr)
                return 1
            return 0
        with open(args.readme, "w") as fh:
            fh.write(updated)
        print(f"updated {len(new)} blocks in {args.readme}")
        return 0
    for name, body in new.items():
        print(f"<!-- figures:{name} -->\n{body}\n<!-- /figures:{name} -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
