"""lstm_infer.score / `lstm-infer score`: every series of a Parquet dataset scored on a Dask
LocalCluster of 2 workers (threads in this process: starting worker processes costs
seconds each on a busy 2-core machine), rows in shuffled order, series of uneven lengths;
each series' outputs equal m.run on that series alone within 1e-6 (both are fp32 runs of
the same kernels; the scorer batches series with padding at their end)."""
import glob
import os

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
distributed = pytest.importorskip("distributed")

import lstm_infer  # noqa: E402
from builders import stacked  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from lstm_infer.cli import cli  # noqa: E402
from lstm_infer.score import score, score_frame  # noqa: E402

FEATURES = ["a", "b", "c"]


def _dataset(rng, n_series=23, max_len=40):
    """Rows of n_series series (ids as strings, uneven lengths 1..max_len) in shuffled order."""
    frames = []
    for i in range(n_series):
        T = int(rng.integers(1, max_len + 1))
        frames.append(pd.DataFrame({
            "sid": f"s{i}", "t": rng.permutation(T) * 10 + 5,  # times unique, not 0..T-1
            **{f: rng.normal(size=T).astype(np.float32) for f in FEATURES},
            "extra": rng.integers(0, 100, T)}))
    df = pd.concat(frames, ignore_index=True)
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    stacked(d / "m.lstm", "LSTM", 3, 6, layers=2, out=2, seed=4)
    df = _dataset(np.random.default_rng(0))
    (d / "data").mkdir()
    for k, chunk in enumerate(np.array_split(np.arange(len(df)), 3)):  # 3 files, series split
        df.iloc[chunk].to_parquet(d / "data" / f"p{k}.parquet", index=False)
    return d, df


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as c:
        yield c


def _expected(model_path, df):
    m = lstm_infer.load(model_path)
    want = {}
    for sid, g in df.groupby("sid"):
        g = g.sort_values("t")
        want[sid] = (g["t"].to_numpy(), m.run(g[FEATURES].to_numpy(np.float32)))
    return want


def _check(result, df, model_path):
    assert len(result) == len(df)
    assert sorted(result.columns) == sorted(list(df.columns) + ["out_0", "out_1"])
    for sid, (times, Y) in _expected(model_path, df).items():
        g = result[result["sid"] == sid]
        assert (g["t"].to_numpy() == times).all(), "rows of a series not in time order"
        np.testing.assert_allclose(g[["out_0", "out_1"]].to_numpy(), Y, rtol=0, atol=1e-6)
    # rows keep their other columns: the scored rows are the input rows
    key = ["sid", "t"]
    merged = result.merge(df, on=key, suffixes=("", "_in"))
    assert len(merged) == len(df) and (merged["extra"] == merged["extra_in"]).all()


def test_score_on_two_workers_matches_run_per_series(setup, cluster, tmp_path, capsys):
    d, df = setup
    out = tmp_path / "out"
    r = score(d / "m.lstm", str(d / "data"), "sid", "t", FEATURES, str(out),
              scheduler=cluster.scheduler_address)
    assert r["rows"] == len(df) and r["columns"] == ["out_0", "out_1"]
    parts = sorted(glob.glob(str(out / "*.parquet")))
    assert len(parts) == r["partitions"] >= 4  # at least 2 partitions per worker
    frames = [pd.read_parquet(p) for p in parts]
    seen = [set(f["sid"]) for f in frames]
    for i in range(len(seen)):  # no series split across partitions
        for j in range(i + 1, len(seen)):
            assert not seen[i] & seen[j]
    _check(pd.concat(frames, ignore_index=True), df, d / "m.lstm")
    assert "partitions" in capsys.readouterr().err  # the progress bar


def test_glob_and_one_partition_per_worker(setup, cluster, tmp_path):
    d, df = setup
    out = tmp_path / "out"
    score(d / "m.lstm", str(d / "data" / "p*.parquet"), "sid", "t", FEATURES, str(out),
          scheduler=cluster.scheduler_address, progress=False, npartitions=2)
    _check(pd.read_parquet(out), df, d / "m.lstm")


def test_score_frame_bidirectional_batches_equal_lengths_only(tmp_path):
    """A non-streamable model must not see padding: series batched by equal length."""
    stacked(tmp_path / "bi.lstm", "GRU", 3, 4, out=2, bidirectional=True, seed=2)
    m = lstm_infer.load(tmp_path / "bi.lstm")
    assert not m.streamable
    df = _dataset(np.random.default_rng(3), n_series=9, max_len=6)
    result = score_frame(m, df, "sid", "t", FEATURES)
    _check(result, df, tmp_path / "bi.lstm")


def test_cli_score(setup, cluster, tmp_path):
    d, df = setup
    out = tmp_path / "cli_out"
    r = CliRunner().invoke(cli, ["score", str(d / "m.lstm"), str(d / "data"), "--by", "sid",
                                 "--time", "t", "--features", "a,b,c", "--out", str(out),
                                 "--scheduler", cluster.scheduler_address, "--no-progress"])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"{len(df):,} rows" in r.stderr
    _check(pd.read_parquet(out), df, d / "m.lstm")


@pytest.mark.parametrize("args,message", [
    (["--features", "a,b,zz"], "column(s) ['zz'] not in the dataset"),
    (["--features", "a,b"], "the model takes 3 input features per step, 2 feature columns"),
    (["--features", "a,b,sid"], "feature column(s) ['sid'] are not numeric"),
    (["--by", "nope"], "column(s) ['nope'] not in the dataset"),
])
def test_cli_bad_input_is_one_line_exit_1(setup, tmp_path, args, message):
    d, _ = setup
    base = {"--by": "sid", "--time": "t", "--features": "a,b,c"}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["score", str(d / "m.lstm"), str(d / "data"), "--out", str(tmp_path / "o")]
    for k, v in base.items():
        argv += [k, v]
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 1
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_default_local_cluster_of_processes(setup, tmp_path):
    """No --scheduler: a LocalCluster of worker processes is started and stopped."""
    d, df = setup
    r = CliRunner().invoke(cli, ["score", str(d / "m.lstm"), str(d / "data"), "--by", "sid",
                                 "--time", "t", "--features", "a,b,c", "--out",
                                 str(tmp_path / "o"), "--workers", "1", "--no-progress"])
    assert r.exit_code == 0, r.stderr
    _check(pd.read_parquet(tmp_path / "o"), df, d / "m.lstm")


def test_out_not_empty_is_refused(setup, tmp_path):
    d, _ = setup
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "old.parquet").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        score(d / "m.lstm", str(d / "data"), "sid", "t", FEATURES, str(tmp_path / "o"))


def test_cli_no_data(setup, tmp_path):
    d, _ = setup
    r = CliRunner().invoke(cli, ["score", str(d / "m.lstm"), str(tmp_path / "none*.parquet"),
                                 "--by", "sid", "--time", "t", "--features", "a,b,c",
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "error:" in r.stderr


def test_nan_feature_names_the_series(setup, tmp_path):
    d, df = setup
    bad = df.copy()
    bad.loc[bad["sid"] == "s3", "b"] = np.nan
    m = lstm_infer.load(d / "m.lstm")
    with pytest.raises(ValueError, match="series sid='s3' has NaN"):
        score_frame(m, bad, "sid", "t", FEATURES)


def test_missing_dask_extra_names_the_install(setup, tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("dask"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    d, _ = setup
    r = CliRunner().invoke(cli, ["score", str(d / "m.lstm"), str(d / "data"), "--by", "sid",
                                 "--time", "t", "--features", "a,b,c", "--out",
                                 str(tmp_path / "o")])
    assert r.exit_code == 1
    assert "pip install 'lstm-infer[dask]'" in r.stderr
