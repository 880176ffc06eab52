"""Scoring a Parquet dataset of many series on Dask, behind `lstm-infer score`.

Every series (the rows sharing one id) runs through the model from the initial state in
time order; the outputs are added to its rows as columns and the rows are written to a
Parquet directory, one file per partition. The work is spread over Dask workers:

- rows are shuffled by id, so each series lies whole in one partition (never split
  across workers), then each partition is sorted by (id, time) and scored with run() on
  batches of series;
- the model file's bytes travel once to each worker in a WorkerPlugin, which loads it
  there once (a worker needs no access to the client's file system);
- the client shows a progress bar on stderr as partitions finish.

Dask, pandas and pyarrow (`pip install 'lstm-infer[dask]'`) are imported only when
scoring runs. `score_frame` is the same work on one pandas DataFrame in this process.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time as _time
from typing import Sequence

import numpy as np

from .model import Model, load

__all__ = ["score", "score_frame", "output_columns", "check_columns"]

DASK_MISSING = ("scoring on Dask needs dask[distributed], pandas and pyarrow, which are not "
                "installed; install them with: pip install 'lstm-infer[dask]'")
BATCH = 64  # series per run() call: amortises the Python per-call cost over many series


def _require_dask():
    try:
        import dask.dataframe as dd
        import distributed
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ImportError(DASK_MISSING) from e
    return dd, distributed


def output_columns(model: Model) -> list[str]:
    """Column names of the outputs: out_0..out_{O-1} for one output, `<name>_<k>` (or
    `<name>` for a size-1 output) for each output of a model with several."""
    slices = model.plan.output_slices
    if len(slices) == 1:
        return [f"out_{k}" for k in range(model.output_size)]
    cols = []
    for name, a, b in slices:
        cols += [name] if b - a == 1 else [f"{name}_{k}" for k in range(b - a)]
    return cols


def _as_matrix(y) -> np.ndarray:
    """run()'s result as one (..., O) array (several outputs side by side, graph order)."""
    return np.concatenate(list(y.values()), axis=-1) if isinstance(y, dict) else y


def _run_series(model: Model, X: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Outputs for the series X[bounds[i]:bounds[i+1]], each from the initial state.

    A streamable model is causal, so a series padded at its end gives the same outputs on
    its own steps: series are batched by length with padding. Other models (bidirectional)
    batch only series of equal length."""
    Y = np.empty((len(X), model.output_size), np.float32)
    lengths = np.diff(bounds)
    order = np.argsort(lengths, kind="stable")
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and j - i < BATCH and (
                model.streamable or lengths[order[j]] == lengths[order[i]]):
            j += 1
        idx = order[i:j]
        T = int(lengths[idx].max())
        batch = np.zeros((len(idx), T, X.shape[1]), np.float32)
        for r, s in enumerate(idx):
            batch[r, :lengths[s]] = X[bounds[s]:bounds[s + 1]]
        out = _as_matrix(model.run(batch))
        for r, s in enumerate(idx):
            Y[bounds[s]:bounds[s + 1]] = out[r, :lengths[s]]
        i = j
    return Y


def score_frame(model: Model, df, by: str, time: str, features: Sequence[str]):
    """Score every series of one pandas DataFrame: rows sorted by (by, time), output
    columns added. The whole job of one partition."""
    cols = output_columns(model)
    df = df.sort_values([by, time], kind="stable").reset_index(drop=True)
    if len(df) == 0:
        return df.assign(**{c: np.zeros(0, np.float32) for c in cols})
    X = df[list(features)].to_numpy(np.float32)
    ids = df[by].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    bounds = np.r_[starts, len(df)]
    try:
        Y = _run_series(model, X, bounds)
    except ValueError as e:
        bad = [ids[a] for a, b in zip(bounds[:-1], bounds[1:]) if not np.isfinite(X[a:b]).all()]
        where = f" (series {by}={bad[0]!r} has NaN/Inf features)" if bad else ""
        raise ValueError(f"{e}{where}") from None
    out = df.copy()
    for k, c in enumerate(cols):
        out[c] = Y[:, k]
    return out


def _score_partition(pdf, plugin_name: str, by: str, time: str, features: list[str]):
    from ._dask_plugin import worker_model
    return score_frame(worker_model(plugin_name), pdf, by, time, features)


def _write_part(pdf, path: str) -> int:
    pdf.to_parquet(path, index=False)
    return len(pdf)


def check_columns(model: Model, dtypes: dict, by: str, time: str, features: Sequence[str]) -> None:
    """Clear errors for a dataset that cannot be scored by this model."""
    missing = [c for c in [by, time, *features] if c not in dtypes]
    if missing:
        raise ValueError(f"column(s) {missing} not in the dataset; it has {list(dtypes)}")
    if not features:
        raise ValueError("no feature columns given (--features a,b,...)")
    if len(set(features)) != len(features):
        raise ValueError(f"feature columns repeat: {list(features)}")
    bad = [c for c in features if getattr(dtypes[c], "kind", "O") not in "fiub"]
    if bad:
        raise ValueError(f"feature column(s) {bad} are not numeric "
                         f"({', '.join(f'{c}: {dtypes[c]}' for c in bad)})")
    if model.graph.prelude is not None:
        raise ValueError("this model takes images (it starts with a prelude), not rows of features")
    if len(features) != model.input_size:
        raise ValueError(f"the model takes {model.input_size} input features per step, "
                         f"{len(features)} feature columns were given ({', '.join(features)})")
    clash = [c for c in output_columns(model) if c in dtypes]
    if clash:
        raise ValueError(f"the dataset already has column(s) {clash}, which would receive the "
                         "outputs; rename them")


class _Progress:
    """A one-line progress bar on stderr (no-op when disabled)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.rows, self.enabled = total, 0, 0, enabled
        self.t0 = _time.perf_counter()

    def update(self, rows: int) -> None:
        self.done += 1
        self.rows += rows
        if self.enabled:
            filled = int(30 * self.done / max(self.total, 1))
            sys.stderr.write(f"\rscoring [{'#' * filled}{'.' * (30 - filled)}] "
                             f"{self.done}/{self.total} partitions, {self.rows:,} rows, "
                             f"{_time.perf_counter() - self.t0:.1f} s")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def score(model_path: str | os.PathLike, data: str, by: str, time: str,
          features: Sequence[str], out: str, scheduler: str | None = None,
          n_workers: int | None = None, progress: bool = True,
          npartitions: int | None = None) -> dict:
    """Score every series of the Parquet dataset `data` (a file, a directory or a glob)
    with the model and write the rows with the output columns added to the Parquet
    directory `out` (rows grouped by series, in time order). Runs on the Dask scheduler at
    `scheduler`, or on a LocalCluster of `n_workers` processes (one thread each) started
    and stopped here. Returns {"rows", "partitions", "seconds", "out", "columns"}."""
    dd, distributed = _require_dask()
    t0 = _time.perf_counter()
    features = list(features)
    model = load(model_path)
    with open(model_path, "rb") as f:
        blob = f.read()
    try:
        df = dd.read_parquet(data)
    except (FileNotFoundError, IndexError) as e:
        raise ValueError(f"{data}: no Parquet data found ({type(e).__name__}: {e})") from None
    check_columns(model, dict(df.dtypes), by, time, features)
    if "://" not in str(out) and os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"{out} already exists and is not empty; the parts written there would "
                         "mix with its files (remove it or choose another --out)")
    cluster = None
    if scheduler is None:
        cluster = distributed.LocalCluster(n_workers=n_workers or os.cpu_count() or 1,
                                           threads_per_worker=1, processes=True,
                                           dashboard_address=":0")  # any free port, no warning
        scheduler = cluster.scheduler_address
    try:
        with distributed.Client(scheduler) as client:
            return _score_on(client, df, model, blob, by, time, features, out, progress,
                             npartitions, t0)
    finally:
        if cluster is not None:
            cluster.close()


def _score_on(client, df, model: Model, blob: bytes, by, time, features, out, progress,
              npartitions, t0) -> dict:
    import dask
    from distributed import as_completed

    from ._dask_plugin import ModelPlugin
    plugin = ModelPlugin(blob, hashlib.sha256(blob).hexdigest())
    client.register_plugin(plugin, name=plugin.name)
    n_workers = max(len(client.scheduler_info().get("workers", {})), 1)
    nparts = npartitions or max(df.npartitions, 2 * n_workers)
    grouped = df.shuffle(on=by, npartitions=nparts)
    cols = output_columns(model)
    meta = df._meta.assign(**{c: np.zeros(0, np.float32) for c in cols})
    scored = grouped.map_partitions(_score_partition, plugin.name, by, time, features, meta=meta)
    remote = "://" in out
    if not remote:
        os.makedirs(out, exist_ok=True)
    parts = scored.to_delayed()
    writes = [dask.delayed(_write_part)(p, (f"{out.rstrip('/')}/part.{i:05d}.parquet" if remote
                                            else os.path.join(out, f"part.{i:05d}.parquet")))
              for i, p in enumerate(parts)]
    bar = _Progress(len(writes), progress)
    if progress and client.dashboard_link:
        sys.stderr.write(f"Dask dashboard: {client.dashboard_link}\n")
    rows = 0
    for fut in as_completed(client.compute(writes)):
        n = fut.result()
        rows += n
        bar.update(n)
    client.unregister_worker_plugin(plugin.name)
    return {"rows": rows, "partitions": len(writes), "seconds": _time.perf_counter() - t0,
            "out": out, "columns": cols}
