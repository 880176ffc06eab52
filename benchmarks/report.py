"""Result files: JSON (everything), Markdown tables, and a PNG plot (matplotlib, optional)."""
from __future__ import annotations

import json
import math
import os

from .engines import LABELS

__all__ = ["write_all", "write_json", "markdown", "plot"]

NOTE_NO_MPL = "matplotlib is not installed: no plot (pip install matplotlib)"


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _f(v: float) -> str:
    """3 significant digits, no exponent for the usual range."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v == 0:
        return "0"
    if math.isinf(v):
        return "inf"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.001:
        return f"{v:.3g}"
    return f"{v:.2e}"


def _r(v: float) -> str:
    return "-" if v is None else ("inf" if math.isinf(v) else f"{v:.3g}x")


def _cell(row: dict, name: str) -> str:
    s = row["stats"][name]
    txt = f"{_f(s['median'])} / {_f(s['p99'])} / {_f(s['max'])}"
    if name == "lstm-infer":
        return txt
    r = row["ratios"][name]
    return f"{txt}<br>{_r(r['median'])} / {_r(r['p99'])} / {_r(r['max'])}"


def _targets(row: dict) -> str:
    ts = row.get("targets") or []
    return "<br>".join(f"{'PASS' if t['pass'] else '**FAIL**'} {t['name']} ({t['detail']})" for t in ts)


def _timed_table(section: dict, keys: list[tuple[str, callable]], extra=()) -> list[str]:
    """extra: (heading, row -> cell) columns after the engines' times."""
    engines = section["engines"]
    head = [k for k, _ in keys] + [_label(e) for e in engines] + [h for h, _ in extra] + ["targets"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in section["rows"]:
        cells = [fn(row) for _, fn in keys]
        if "stats" not in row:
            cells += ["not timed: agreement check failed"] + [""] * (len(engines) - 1)
            cells += [""] * len(extra)
        else:
            cells += [_cell(row, e) for e in engines]
            cells += [fn(row) for _, fn in extra]
        cells.append(_targets(row))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


EFFICIENCY_HEAD = "lstm-infer GFLOP/s, GB/s (% of peak)"


def _efficiency(peak: dict | None, per_call: callable):
    """A column: lstm-infer's median as achieved GFLOP/s and weight GB/s, each with its
    share of the machine's measured peak (benchmarks/peak.py): FMA peak for FLOPs; the L2
    read rate for weights up to 1 MB, the DRAM copy rate beyond. per_call(row) -> (steps of
    one sequence per timed unit, sequences sharing each weight read)."""
    from .peak import model_work

    def cell(row: dict) -> str:
        if not peak:
            return "-"
        flops, wbytes = model_work(row["model"])
        steps, share = per_call(row)
        t = row["stats"]["lstm-infer"]["median"] * 1e-6  # seconds per timed unit
        gf = flops * steps / t / 1e9
        gb = wbytes * steps / share / t / 1e9
        ref = peak["l2_read_gbs"] if wbytes <= (1 << 20) else peak["copy_gbs"]
        return (f"{_f(gf)} ({100 * gf / peak['fma_gflops']:.0f}%), "
                f"{_f(gb)} ({100 * gb / ref:.0f}% {'L2' if wbytes <= (1 << 20) else 'DRAM'})")
    return EFFICIENCY_HEAD, cell


def _model(row: dict) -> str:
    return row["model"]["label"]


def _where(row: dict) -> str:
    where = row.get("model", {}).get("label", "") if isinstance(row.get("model"), dict) else ""
    for k, short in (("chunk", "chunk"), ("T", "T"), ("batch", "B"), ("streams", "n")):
        if k in row:
            where += f" {short}={row[k]}"
    return where.strip()


def _target_summary(res: dict) -> list[str]:
    lines, missed = [], {}
    for name, sec in res["sections"].items():
        items = [(row, t) for row in sec.get("rows", []) for t in (row.get("targets") or [])]
        items += [({"model": sec.get("model", {})}, t) for t in sec.get("targets", [])]
        if not items:
            continue
        by_target: dict[str, list] = {}
        for row, t in items:
            by_target.setdefault(t["name"], []).append((row, t))
        for tname, its in by_target.items():
            n_pass = sum(t["pass"] for _, t in its)
            lines.append(f"| {name} | {tname} | {n_pass} / {len(its)} |")
            fails = [f"{_where(row)} ({t['detail']})" for row, t in its if not t["pass"]]
            if fails:
                missed[f"{name}: {tname}"] = fails
    if not lines:
        return []
    out = ["## Targets", "", "| section | target | rows passed |", "|---|---|---|"] + lines + [""]
    if missed:
        out += ["Missed:", ""] + [f"- {k}: " + "; ".join(v) for k, v in missed.items()] + [""]
    return out


def _isa_lines(env: dict) -> list[str]:
    """What instruction sets the engines ran with, when the run asked for one (`--isa`)."""
    isa = env.get("isa") or {}
    if isa.get("requested", "host") == "host":
        return []
    li = isa["lstm-infer"]
    return [f"**Instruction set: {isa['requested']}.** lstm-infer's kernels compiled for "
            f"`{li['numba_cpu_name']}` with features `{li['numba_cpu_features']}` (AVX-512 "
            f"kernels: {'yes' if li['avx512_kernels'] else 'no'}); PyTorch's CPU capability: "
            f"{isa.get('torch', 'n/a')}; onnxruntime: {isa['onnxruntime']}, so it keeps what the "
            f"CPU has.", ""]


def markdown(res: dict) -> str:
    meta, env = res["meta"], res["meta"]["environment"]
    v = env["versions"]
    th = env["threads"]
    out = ["# lstm-infer benchmarks", "",
           f"{meta['started']}, {'quick subset' if meta.get('quick') else 'full suite'}, "
           f"{meta['seconds']:.0f} s. CPU: {env['cpu_model']} ({env['cpu_count']} logical cores"
           f"{', ' + ' '.join(env['cpu_flags']) if env.get('cpu_flags') else ''}). "
           f"Python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, torch {v.get('torch')}, "
           f"onnxruntime {v.get('onnxruntime')}, onnx {v.get('onnx')}, lstm-infer {v['lstm_infer']}"
           + (f" (git {env['git'].get('commit', '')[:10]}{', dirty' if env['git'].get('dirty') else ''})"
              if env.get("git") else "") + ".",
           "",
           *_isa_lines(env),
           "Threads: PyTorch " + (f"{th['torch']['num_threads']} intra-op / "
                                  f"{th['torch']['num_interop_threads']} inter-op, inference_mode"
                                  if "torch" in th else "n/a")
           + "; onnxruntime " + (f"{th['onnxruntime']['intra_op_num_threads']} intra-op / "
                                 f"{th['onnxruntime']['inter_op_num_threads']} inter-op, no spinning, "
                                 f"sequential" if "onnxruntime" in th else "n/a")
           + "; lstm-infer defaults (single-threaded Numba kernels; run() does its input "
             "projections with single-threaded Numba kernels, no BLAS).",
           "",
           "Same random weights in every engine (PyTorch default init, seed "
           f"{res['config']['seed']}); inputs standard normal; the Linear head has as many outputs as "
           "inputs. Times: `median / p99 / max` from `time.perf_counter_ns` around each call, "
           "engines interleaved over rounds (median = median of round medians). The line under "
           "each figure is the **ratio to lstm-infer** (other engine / lstm-infer; above 1x "
           "lstm-infer is faster).", ""]
    ag = res["agreement"]
    worst = max((c["max_abs_diff"] for c in ag["checks"]), default=0.0)
    out += [f"Agreement before timing: {sum(c['passed'] for c in ag['checks'])} / {len(ag['checks'])} "
            f"checks passed (all engines pairwise and against float64 within {ag['tolerance']:g}; "
            f"largest pairwise difference {worst:.2g}).", ""]
    out += _target_summary(res)
    S = res["sections"]
    pk = meta.get("peak")
    if pk:
        out += [f"Machine peak, 1 thread ({pk['method']}): {_f(pk['fma_gflops'])} GFLOP/s FMA, "
                f"{_f(pk['l2_read_gbs'])} GB/s read from L2, {_f(pk['copy_gbs'])} GB/s DRAM copy. "
                "Each table's efficiency column counts the matrices' multiply-adds and their fp32 "
                "bytes, every matrix read once per step (per call for many streams; once per "
                "step for all B sequences of a batch).", ""]

    if "per_step" in S:
        out += ["## Per-step latency from Python (µs per step)", "",
                "lstm-infer `stream.step(x)`; onnxruntime `session.run` with the state passed in and "
                "out; PyTorch `nn.LSTMCell`/`nn.GRUCell` per layer + `nn.Linear`; PyTorch "
                "`nn.LSTM`/`nn.GRU` fed one step (state passed back in).", ""]
        out += _timed_table(S["per_step"], [("model", _model)],
                            [_efficiency(pk, lambda r: (1, 1))]) + [""]
    if "chunk" in S:
        out += ["## Per-step cost inside a chunk (µs per step)", "",
                "lstm-infer `stream.step_many(X)`; onnxruntime's sequence node on the same chunk "
                "(state in/out); PyTorch `nn.LSTM`/`nn.GRU` on the chunk. Chunk time / chunk length.", ""]
        out += _timed_table(S["chunk"], [("model", _model), ("chunk", lambda r: str(r["chunk"]))],
                            [_efficiency(pk, lambda r: (1, 1))]) + [""]
    if "throughput" in S:
        sec = S["throughput"]
        out += ["## Whole-sequence throughput (µs per sequence step)", "",
                "lstm-infer `model.run(X)`; onnxruntime and PyTorch on the same sequences from the "
                "zero state. Call time / (B·T). " + sec.get("note", "") + ".", ""]
        out += _timed_table(sec, [("model", _model), ("T", lambda r: str(r["T"]) + (
            f" (of {r['T_requested']})" if r["T"] != r["T_requested"] else "")),
                                  ("B", lambda r: str(r["batch"]))],
                            [("lstm-infer steps/s", lambda r: _f(r["steps_per_s"]["lstm-infer"])),
                             _efficiency(pk, lambda r: (1, r["batch"]))]) + [""]
    if "streams" in S:
        out += ["## Many streams: one step of n streams (µs per call)", "",
                "lstm-infer `model.streams(n).step(X)`; onnxruntime with batch n (state in/out); "
                "PyTorch cells on a batch of n.", ""]
        out += _timed_table(S["streams"], [("model", _model), ("n", lambda r: str(r["streams"]))],
                            [("lstm-infer µs per stream-step",
                              lambda r: _f(r["us_per_stream_step"]["lstm-infer"])),
                             _efficiency(pk, lambda r: (r["streams"], r["streams"]))]) + [""]
    if "startup" in S:
        sec = S["startup"]
        out += [f"## Start-up: fresh process to first output ({sec['model']['label']})", "",
                sec["note"], "",
                "| engine | Numba cache | first output s (median / max) | ratio | of which, ms: "
                "interpreter | imports | load | first call | peak RSS, MiB |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in sec["rows"]:
            ms = {k: _f(r[k]["median"] * 1e3) for k in ("interpreter_s", "import_s", "load_s",
                                                          "first_call_s")}
            rss = r.get("peak_rss_mib")
            out.append(f"| {_label(r['engine'])} | {r['cache'] if r['engine'] == 'lstm-infer' else 'n/a'} | "
                       f"{_f(r['first_output_s']['median'])} / {_f(r['first_output_s']['max'])} | "
                       f"{_r(r['ratio'])} | {ms['interpreter_s']} | {ms['import_s']} | "
                       f"{ms['load_s']} | {ms['first_call_s']} | {_f(rss['median']) if rss else '-'} |")
        out += [""] + [f"{'PASS' if t['pass'] else '**FAIL**'} {t['name']} ({t['detail']})"
                       for t in sec["targets"]] + [""]
        out += ["### Model load time (in-process, ms) and file size (bytes)", "",
                "| model | lstm-infer load | onnxruntime session | PyTorch module + state_dict | "
                ".lstm | .onnx | .pt |", "|---|---|---|---|---|---|---|"]
        for r in sec["loads"]:
            t, s, q = r["load_ms"], r["file_bytes"], r["ratios"]
            out.append(f"| {r['model']['label']} | {_f(t['lstm-infer'])} | {_f(t['onnxruntime'])} "
                       f"({_r(q['onnxruntime'])}) | {_f(t['torch'])} ({_r(q['torch'])}) | "
                       f"{s['lstm-infer']:,} | {s['onnxruntime']:,} | {s['torch']:,} |")
        out.append("")
    if "accuracy" in S:
        sec = S["accuracy"]
        rows = sec["rows"]
        names = list(rows[0]["max_abs_error"]) if rows else []
        out += ["## Accuracy: max abs error against a float64 reference", "",
                f"PyTorch in float64 on the same weights, {rows[0]['T'] if rows else '-'} steps of "
                "standard-normal input from the zero state. lstm-infer `step` (one call per step), "
                "`step_many`, `run`; onnxruntime sequence run; PyTorch float32 cells and module. "
                "Ratio line: error / lstm-infer step's error.", "",
                "| model | " + " | ".join(_label(n) + (" step" if n == "lstm-infer" else "")
                                         for n in names) + " |", "|" + "---|" * (len(names) + 1)]
        for r in rows:
            e, q = r["max_abs_error"], r["ratios"]
            out.append(f"| {r['model']['label']} | " + " | ".join(
                f"{e[n]:.2e}" + ("" if n == "lstm-infer" else f"<br>{_r(q[n])}") for n in names) + " |")
        out.append("")
    from .variants import TITLES
    for name, title in TITLES.items():
        if name in S:
            out += [f"## {title}", ""] + ([S[name]["note"] + ".", ""] if S[name].get("note") else [])
            out += _timed_table(S[name], [("model", _model)]) + [""]
    secs = ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in S.items())
    out += [f"Section times: {secs}.", ""]
    if res.get("plot_note"):
        out += [res["plot_note"], ""]
    return "\n".join(out)


def write_json(res: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(res, f, indent=1, allow_nan=True)
        f.write("\n")


# --------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------
def plot(res: dict, path: str) -> str | None:
    """Write the PNG; returns None, or a note saying why there is no plot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return NOTE_NO_MPL
    S = res["sections"]
    panels = []
    colors = {"lstm-infer": "C3", "onnxruntime": "C0", "torch-cell": "C2", "torch-rnn": "C1"}

    def by_shape(rows, pred, value):
        xs, ys = [], {}
        for r in rows:
            if pred(r) and "stats" in r:
                lab = f"({r['model']['input_size']},{r['model']['hidden_size']})"
                if lab not in xs:
                    xs.append(lab)
                for e, val in value(r).items():
                    ys.setdefault(e, {})[lab] = val
        return xs, ys

    for op in ("LSTM", "GRU"):
        if "per_step" in S:
            xs, ys = by_shape(S["per_step"]["rows"], lambda r: r["model"]["op"] == op and
                              r["model"]["layers"] == 1,
                              lambda r: {e: s["median"] for e, s in r["stats"].items()})
            if xs:
                panels.append((f"{op} 1 layer: step() from Python", "µs per step (median)", xs, ys))
    if "chunk" in S:
        big = max((r["chunk"] for r in S["chunk"]["rows"]), default=0)
        xs, ys = by_shape(S["chunk"]["rows"], lambda r: r["model"]["op"] == "LSTM" and
                          r["model"]["layers"] == 1 and r["chunk"] == big,
                          lambda r: {e: s["median"] for e, s in r["stats"].items()})
        if xs:
            panels.append((f"LSTM 1 layer: step inside a chunk of {big}", "µs per step", xs, ys))
    if "throughput" in S:
        for B in sorted({r["batch"] for r in S["throughput"]["rows"]}):
            rows = [r for r in S["throughput"]["rows"] if r["batch"] == B and r["model"]["op"] == "LSTM"]
            longest = {}
            for r in rows:
                k = r["model"]["key"]
                if k not in longest or r["T"] > longest[k]["T"]:
                    longest[k] = r
            xs, ys = by_shape(list(longest.values()), lambda r: True,
                              lambda r: {e: v for e, v in r["steps_per_s"].items()})
            if xs:
                panels.append((f"LSTM run(), batch {B} (longest T)", "sequence steps / s", xs, ys))
    if "streams" in S:
        rows = [r for r in S["streams"]["rows"] if "stats" in r and r["model"]["op"] == "LSTM"]
        for H in sorted({r["model"]["hidden_size"] for r in rows}):
            sub = [r for r in rows if r["model"]["hidden_size"] == H]
            xs = [str(r["streams"]) for r in sub]
            ys = {}
            for r in sub:
                for e, v in r["us_per_stream_step"].items():
                    ys.setdefault(e, {})[str(r["streams"])] = v
            panels.append((f"LSTM hidden {H}: streams(n).step", "µs per stream-step", xs, ys))
    if not panels and "startup" not in S:
        return "nothing to plot"
    n = len(panels) + (1 if "startup" in S else 0)
    cols = min(3, n)
    rows_n = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 3.8 * rows_n), squeeze=False)
    flat = [a for row in axes for a in row]
    for ax, (title, ylabel, xs, ys) in zip(flat, panels):
        for e, vals in ys.items():
            pts = [(i, vals[x]) for i, x in enumerate(xs) if x in vals]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=_label(e),
                        color=colors.get(e), lw=2.2 if e == "lstm-infer" else 1.3)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs, rotation=30, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if "startup" in S:
        ax = flat[len(panels)]
        rows = S["startup"]["rows"]
        labels = [f"{_label(r['engine'])}\n{r['cache'] if r['engine'] == 'lstm-infer' else ''}"
                  for r in rows]
        vals = [r["first_output_s"]["median"] for r in rows]
        ax.bar(range(len(rows)), vals, color=[colors.get(r["engine"], "C1") for r in rows])
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("s to first output", fontsize=9)
        ax.set_yscale("log")
        ax.set_title("fresh process: import + load + first output", fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    for ax in flat[n:]:
        ax.axis("off")
    env = res["meta"]["environment"]
    fig.suptitle(f"lstm-infer vs PyTorch vs onnxruntime, 1 thread each - {env['cpu_model']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_all(res: dict, out_dir: str, name: str = "latest") -> list[str]:
    base = os.path.join(out_dir, name)
    paths = []
    note = plot(res, base + ".png")
    if note is None:
        paths.append(base + ".png")
    else:
        res["plot_note"] = note
        if os.path.exists(base + ".png"):  # never leave a plot from an older run next to new tables
            os.remove(base + ".png")
    write_json(res, base + ".json")
    paths.append(base + ".json")
    with open(base + ".md", "w") as f:
        f.write(markdown(res))
    paths.append(base + ".md")
    return paths
