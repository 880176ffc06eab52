"""Scoring throughput (rows/s) of `lstm-infer score`: the single-process path (pandas read,
score_frame, pandas write) against Dask LocalClusters of 1 and 2 worker processes (one
thread each) on the same Parquet dataset.

    PYTHONPATH=. python benchmarks/score_bench.py [--series 2000] [--max-len 400] [--rounds 3]

Times are wall time (the work runs in other processes, so thread CPU time cannot see it),
best of --rounds per engine, engines alternating round by round; a cluster's start-up is
timed apart and not counted in its rows/s. On a shared machine the 2-worker figure is
bounded by the cores actually free: the load average is recorded with the results.
Writes benchmarks/results/score.json and .md (not committed). Needs the [dask] extra.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def make_data(directory: Path, n_series: int, max_len: int, n_files: int = 8) -> tuple[Path, int]:
    """Shuffled rows of n_series series with lengths uniform in [max_len/8, max_len]."""
    import pandas as pd
    rng = np.random.default_rng(0)
    lengths = rng.integers(max(1, max_len // 8), max_len + 1, n_series)
    sid = np.repeat(np.arange(n_series), lengths)
    t = np.concatenate([np.arange(n) for n in lengths])
    X = rng.normal(size=(len(sid), 8)).astype(np.float32)
    df = pd.DataFrame({"sid": sid, "t": t, **{f"f{k}": X[:, k] for k in range(8)}})
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    data = directory / "data"
    data.mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(df)), n_files)):
        df.iloc[part].to_parquet(data / f"part{k}.parquet", index=False)
    return data, len(df)


def single_process(model_path, data, out) -> None:
    import pandas as pd
    import lstm_infer
    from lstm_infer.score import score_frame
    m = lstm_infer.load(model_path)
    df = pd.read_parquet(data)
    os.makedirs(out, exist_ok=True)
    score_frame(m, df, "sid", "t", [f"f{k}" for k in range(8)]).to_parquet(
        os.path.join(out, "part.00000.parquet"), index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--max-len", type=int, default=400)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import distributed
    from builders import stacked
    from lstm_infer.score import score

    tmp = Path(tempfile.mkdtemp(prefix="score-bench-"))
    try:
        model = tmp / "m.lstm"
        stacked(model, "LSTM", 8, args.hidden, layers=2, out=4)
        data, rows = make_data(tmp, args.series, args.max_len)
        feats = [f"f{k}" for k in range(8)]
        clusters, startup = {}, {}
        for n in (1, 2):
            t0 = time.perf_counter()
            clusters[n] = distributed.LocalCluster(n_workers=n, threads_per_worker=1,
                                                   processes=True, dashboard_address=None)
            startup[n] = time.perf_counter() - t0
        best = {"single process": np.inf, "dask, 1 worker": np.inf, "dask, 2 workers": np.inf}
        for r in range(args.rounds):
            for name in best:
                out = tmp / f"out-{r}-{name.replace(' ', '').replace(',', '')}"
                t0 = time.perf_counter()
                if name == "single process":
                    single_process(model, data, out)
                else:
                    n = 1 if "1 worker" in name else 2
                    score(model, str(data), "sid", "t", feats, str(out),
                          scheduler=clusters[n].scheduler_address, progress=False)
                best[name] = min(best[name], time.perf_counter() - t0)
                shutil.rmtree(out)
        for c in clusters.values():
            c.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    res = {"rows": rows, "series": args.series, "max_len": args.max_len,
           "model": f"2-layer LSTM(8, {args.hidden}) + Linear(4)",
           "seconds": best, "rows_per_s": {k: rows / v for k, v in best.items()},
           "cluster_startup_s": {f"{n} worker(s)": s for n, s in startup.items()},
           "cpus": os.cpu_count(), "loadavg": os.getloadavg(), "platform": platform.platform()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "score.json").write_text(json.dumps(res, indent=2))
    lines = [f"# lstm-infer score: {rows:,} rows, {args.series} series, {res['model']}", "",
             "| engine | best wall s | rows/s |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v:.2f} | {rows / v:,.0f} |" for k, v in best.items()]
    lines += ["", f"cluster start-up (not counted): " + ", ".join(
        f"{k} {v:.1f} s" for k, v in res["cluster_startup_s"].items()),
        f"{res['cpus']} CPUs, load average {res['loadavg'][0]:.1f}"]
    (RESULTS / "score.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
