"""README.md quotes measured figures only from the recorded result files.

benchmarks/summary.py computes every figure from benchmarks/results/latest.json and
compression.json and writes the README blocks between `<!-- figures:NAME -->` markers.
After a new benchmark run these tests fail until `python -m benchmarks.summary
--write-readme` has brought the README up to date. No torch/onnx needed."""
import copy
import json
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import summary  # noqa: E402

if not os.path.exists(summary.LATEST):
    pytest.skip("no recorded benchmark results", allow_module_level=True)


@pytest.fixture(scope="module")
def results():
    return summary.load()


@pytest.fixture(scope="module")
def readme():
    with open(summary.README, encoding="utf-8") as f:
        return f.read()


def test_readme_blocks_match_recorded_results(results, readme):
    new = summary.blocks(*results)
    # "models" (the corpus table) and "avx2" come from real_models.json and avx2.json when
    # they have been recorded
    assert set(new) - {"models", "avx2"} == {"why", "table", "standing", "deploying"}
    assert ("avx2" in new) == os.path.exists(summary.AVX2)
    assert summary.render_readme(readme, new) == readme, (
        "README.md quotes figures that differ from benchmarks/results/*.json: run "
        "`python -m benchmarks.summary --write-readme`")


def test_every_quoted_figure_names_its_result_field(results):
    f = summary.quoted(*results)
    assert len(f.used) > 40
    for name in f.used:
        value, source = f.items[name]
        assert value, name
        assert source.split()[0] in ("latest.json", "compression.json"), (name, source)


def test_ratios_name_their_engine(results):
    """Every ratio quoted outside the table (whose header names each column's engine) has
    the engine (or, for file sizes, the fp32 file) it is measured against close by."""
    f = summary.quoted(*results)
    blocks = summary.blocks(*results)
    text = " ".join(" ".join(b.split()) for k, b in blocks.items() if k != "table")
    ratios = {f.items[n][0] for n in f.used if f.items[n][0].endswith("x") and not n.startswith("table")}
    assert len(ratios) > 10
    for value in ratios:
        hits = [m.start() for m in re.finditer(r"(?<![\d.-])" + re.escape(value), text)]
        assert hits, value
        for at in hits:
            near = text[max(0, at - 120):at + len(value) + 60]
            assert re.search(r"onnxruntime|PyTorch|than fp32|xlstm package|Keras", near), (value, near)


def test_a_missing_row_is_an_error_not_a_guess(results):
    latest, compression = copy.deepcopy(results[0]), results[1]
    latest["sections"]["per_step"]["rows"] = [r for r in latest["sections"]["per_step"]["rows"]
                                              if r["model"]["label"] != "LSTM 1L (1,32)"]
    with pytest.raises(summary.MissingFigure, match=r"LSTM 1L \(1,32\)"):
        summary.blocks(latest, compression)


# a measured quantity: a number followed by a unit or a ratio sign
_MEASURED = re.compile(r"\d[\d.,]*\s?(?:µs|ms|s|MiB|KiB|MB|GB|x)(?![\w-])")


def test_no_measured_number_outside_the_generated_blocks(readme):
    text = re.sub(r"<!-- figures:([\w-]+) -->.*?<!-- /figures:\1 -->", "", readme, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    found = _MEASURED.findall(text)
    assert not found, f"README.md quotes measured figures outside the generated blocks: {found}"
    assert _MEASURED.search("takes 2.7 µs, 4.3x faster") and _MEASURED.search("in 0.4 s")


def test_avx2_block_counts_the_avx2_runs_targets(results):
    """The README's AVX2 block comes from an `--isa avx2` result only, and counts its targets."""
    latest = results[0]
    with pytest.raises(ValueError, match="--isa avx2"):
        summary.avx2_block(latest)
    avx2 = json.loads(json.dumps(latest))
    avx2["meta"]["environment"]["isa"] = {"requested": "avx2", "torch": "AVX2"}
    counts = summary.target_counts(avx2)
    assert counts and all(0 <= p <= n for _, _, p, n in counts)
    text = summary.avx2_block(avx2)
    for sec, name, p, n in counts:
        assert f"{name} ({sec}): {p}/{n}" in text
