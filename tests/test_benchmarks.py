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


def test_isa_is_recorded_and_reported(result, tmp_path):
    """Every run records the instruction sets the engines ran with; a host run says nothing
    more in its report, an `--isa avx2` run says what each engine was given."""
    from lstm_infer.kernels.linalg import WIDE_VECTORS
    isa = result["meta"]["environment"]["isa"]
    assert isa["requested"] == "host" and isa["lstm-infer"]["avx512_kernels"] == WIDE_VECTORS
    assert "Instruction set" not in report.markdown(result)
    avx2 = json.loads(json.dumps(result))
    avx2["meta"]["environment"]["isa"] = {
        "requested": "avx2", "onnxruntime": "its own dispatch by cpuid (no switch)", "torch": "AVX2",
        "lstm-infer": {"numba_cpu_name": "haswell", "numba_cpu_features": "+avx2",
                       "avx512_kernels": False}}
    md = report.markdown(avx2)
    assert "**Instruction set: avx2.**" in md and "`haswell`" in md and "AVX-512 kernels: no" in md


def test_isa_avx2_reruns_with_avx512_off(monkeypatch):
    """`--isa avx2` runs the suite again in a fresh process with Numba targeting Haswell
    without any AVX-512 feature (NUMBA_CPU_NAME alone keeps the host's), PyTorch capped at
    AVX2, a Numba cache of its own, and results named after the ISA."""
    from benchmarks import run as bench_run
    seen = {}

    def fake_run(cmd, env, cwd):
        seen.update(cmd=cmd, env=env)
        return type("Done", (), {"returncode": 0})()

    monkeypatch.delenv("LSTM_INFER_BENCH_ISA", raising=False)
    monkeypatch.setattr(bench_run.subprocess, "run", fake_run)
    assert bench_run.main(["--isa", "avx2", "--quick"]) == 0
    env = seen["env"]
    assert seen["cmd"][-5:] == ["--isa", "avx2", "--quick", "--name", "avx2"]
    assert env["LSTM_INFER_BENCH_ISA"] == "avx2" and env["NUMBA_CPU_NAME"] == "haswell"
    assert "+avx2" in env["NUMBA_CPU_FEATURES"] and "avx512" not in env["NUMBA_CPU_FEATURES"]
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["NUMBA_CACHE_DIR"] != os.environ.get("NUMBA_CACHE_DIR")
