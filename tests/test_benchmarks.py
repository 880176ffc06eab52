"""Smoke test of the benchmark suite: its smallest configuration, a couple of calls of each
in-process section, no timing assertions (performance lives in benchmarks/, not in tests).
Runs in a few seconds (the start-up section, which spawns processes, is left out)."""
import json
import os
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import report  # noqa: E402
from benchmarks import peak  # noqa: E402
from benchmarks import variants  # noqa: E402
from benchmarks.run import SECTIONS, Suite, run_suite, smoke_config  # noqa: E402


@pytest.fixture(scope="module")
def result():
    return run_suite(smoke_config(), log=lambda *a: None)


def test_agreement_checked_and_passed(result):
    ag = result["agreement"]
    assert ag["passed"] is True
    sections = {c["section"] for c in ag["checks"]}
    assert sections == {"per_step", "chunk", "throughput", "streams"}
    for c in ag["checks"]:
        assert c["max_abs_diff"] < ag["tolerance"]
        assert len(c["engines"]) >= 3


def test_result_structure(result):
    env = result["meta"]["environment"]
    assert env["cpu_model"] and env["versions"]["torch"] and env["versions"]["onnxruntime"]
    assert env["threads"]["torch"]["num_threads"] == 1
    assert env["threads"]["onnxruntime"]["intra_op_num_threads"] == 1
    secs = result["sections"]
    assert set(secs) == set(SECTIONS) - {"startup"} - set(variants.SECTIONS)
    for name in ("per_step", "chunk", "throughput", "streams"):
        rows = secs[name]["rows"]
        assert rows
        for row in rows:
            assert set(row["stats"]) == set(secs[name]["engines"])
            for e, s in row["stats"].items():
                assert {"median", "p99", "max"} <= set(s) and s["n"] >= 1
                assert set(row["ratios"][e]) == {"median", "p99", "max"}
            assert row["ratios"]["lstm-infer"]["median"] == pytest.approx(1.0)
    # The engines each section times, and nothing else: lstm-infer appears once (no variant of
    # it under a thread setting that changes nothing: its kernels, run()'s input projections
    # included, are single-threaded Numba code and call no BLAS).
    assert secs["per_step"]["engines"] == ["lstm-infer", "onnxruntime", "torch-cell", "torch-rnn"]
    assert secs["chunk"]["engines"] == ["lstm-infer", "onnxruntime", "torch-rnn"]
    assert secs["throughput"]["engines"] == ["lstm-infer", "onnxruntime", "torch-rnn"]
    assert secs["streams"]["engines"] == ["lstm-infer", "onnxruntime", "torch-cell"]
    assert "numpy_blas" not in env["threads"]["lstm-infer"]
    assert {r["chunk"] for r in secs["chunk"]["rows"]} == {1, 16}
    assert {r["streams"] for r in secs["streams"]["rows"]} == {1, 4}
    for row in secs["accuracy"]["rows"]:
        assert max(row["max_abs_error"].values()) < 1e-4


def test_report_files(result, tmp_path):
    paths = report.write_all(dict(result), str(tmp_path), "smoke")
    with open(tmp_path / "smoke.json") as f:
        assert json.load(f)["agreement"]["passed"] is True
    md = (tmp_path / "smoke.md").read_text()
    assert "Per-step latency" in md and "lstm-infer" in md and "x" in md
    # run() has used the Numba matmat_acc kernel, not numpy's BLAS, since 7801957
    assert "BLAS 1 thread" not in md and "numpy's BLAS" not in md
    assert "matmat_acc" in md
    assert str(tmp_path / "smoke.md") in paths


def test_efficiency_against_measured_peak(result):
    """Every timed row can be read against the machine's limits (issue 10): the suite measures
    the FMA peak and bandwidths once, and each table gets an efficiency column from them."""
    pk = result["meta"]["peak"]
    assert pk["fma_gflops"] > 1 and pk["l2_read_gbs"] > 1 and pk["copy_gbs"] > 0.1
    md = report.markdown(result)
    assert md.count(report.EFFICIENCY_HEAD) == 4  # per step, chunk, throughput, streams
    row = result["sections"]["per_step"]["rows"][0]
    head, cell = report._efficiency(pk, lambda r: (1, 1))
    flops, _ = peak.model_work(row["model"])
    gf = flops / (row["stats"]["lstm-infer"]["median"] * 1e-6) / 1e9
    assert cell(row).startswith(report._f(gf) + " (")


def test_variant_section_convlstm(tmp_path):
    """A variants section (benchmarks/variants.py) checks agreement on the timed path, times
    both engines, carries its target, and renders in the report; ConvLSTM is the quickest."""
    cfg = smoke_config()
    suite = Suite(cfg, str(tmp_path), log=lambda *a: None)
    sec = variants.section_convlstm(suite)
    (row,) = sec["rows"]
    assert suite.agreement[0]["passed"] and suite.agreement[0]["max_abs_diff"] < 1e-4
    assert set(row["stats"]) == {"lstm-infer", "torch-convlstm"}
    assert row["ratios"]["lstm-infer"]["median"] == pytest.approx(1.0)
    (t,) = row["targets"]
    assert t["name"] == ">= 5x PyTorch cell loop" and t["pass"] == (
        row["ratios"]["torch-convlstm"]["median"] >= 5)
    res = {"meta": {"started": "", "seconds": 1.0, "quick": True, "environment": {
        "cpu_model": "x", "cpu_count": 2, "versions": {"python": "3", "numpy": "2", "numba": "0",
                                                      "lstm_infer": "0"}, "threads": {}}},
           "config": {"seed": 0}, "agreement": {"tolerance": 1e-4, "checks": suite.agreement},
           "sections": {"convlstm": dict(sec, seconds=1.0)}}
    md = report.markdown(res)
    assert variants.TITLES["convlstm"] in md and "PyTorch cell loop" in md
    assert "| convlstm | >= 5x PyTorch cell loop |" in md
