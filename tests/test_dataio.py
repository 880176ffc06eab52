"""lstm_infer.dataio used directly: the file formats of `run` and the line protocol of
`stream` (the commands themselves are tested end to end in test_cli.py)."""
from __future__ import annotations

import ast
import io

import numpy as np
import pytest

import lstm_infer.dataio as dataio
from lstm_infer.dataio import (check_output, fit_input, format_row, input_lines, parse_floats,
                               parse_step, read_csv, read_input, stream_lines, write_csv,
                               write_output)


# ---- reading ---------------------------------------------------------------------------
def test_parse_floats_commas_or_whitespace():
    assert parse_floats("1, 2.5,-3e-1\n") == [1.0, 2.5, -0.3]
    assert parse_floats("  1 2\t3 ") == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        parse_floats("1,x,3")


def test_read_csv_with_and_without_header(tmp_path):
    (tmp_path / "h.csv").write_text("a,b\n1,2\n\n# a comment\n3,4\n")
    (tmp_path / "n.csv").write_text("1 2\n3 4")
    for name in ("h.csv", "n.csv"):
        X = read_csv(str(tmp_path / name))
        assert X.dtype == np.float32
        np.testing.assert_array_equal(X, [[1, 2], [3, 4]])


@pytest.mark.parametrize("text, fragments", [
    ("1,2\n3,x\n", ["line 2", "not a row of numbers", "'3,x'"]),
    ("a,b\nc,d\n1,2\n", ["line 2", "not a row of numbers"]),  # only the first line is a header
    ("1,2,3\n4,5\n", ["line 2 has 2 values", "earlier rows have 3"]),
    ("a,b\n\n", ["no data rows"]),
    ("", ["no data rows"]),
])
def test_read_csv_bad_rows_name_file_and_line(tmp_path, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        read_csv(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: ")
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_read_input_npy_csv_and_errors(tmp_path):
    X = np.arange(6, dtype=np.int32).reshape(3, 2)
    np.save(tmp_path / "x.npy", X)
    np.testing.assert_array_equal(read_input(str(tmp_path / "x.npy")), X)
    (tmp_path / "x.CSV").write_text("1,2\n")
    np.testing.assert_array_equal(read_input(str(tmp_path / "x.CSV")), [[1, 2]])
    (tmp_path / "x.txt").write_text("1 2\n")
    np.testing.assert_array_equal(read_input(str(tmp_path / "x.txt")), [[1, 2]])
    with pytest.raises(ValueError, match="unknown input format"):
        read_input(str(tmp_path / "x.parquet"))
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(TypeError, match="must be numeric"):
        read_input(str(tmp_path / "s.npy"))
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):  # never unpickled
        read_input(str(tmp_path / "o.npy"))


def test_fit_input():
    assert fit_input(np.zeros(5), 1, "x.npy").shape == (5, 1)  # a 1-D series, one feature
    assert fit_input(np.zeros(5), 3, "x.npy").shape == (5,)  # left to Model.run to refuse
    assert fit_input(np.zeros((2, 5, 3)), 3, "x.npy").shape == (2, 5, 3)
    with pytest.raises(ValueError, match=r"x.npy: each time step has 4 values but the model takes 3"):
        fit_input(np.zeros((5, 4)), 3, "x.npy")


# ---- writing ---------------------------------------------------------------------------
def test_check_output():
    check_output("y.npy", ["y"], batched=True)
    check_output("y.NPZ", ["a", "b"], batched=True)
    check_output("y.csv", ["a", "b"], batched=False)
    with pytest.raises(ValueError, match="unknown output format"):
        check_output("y.json", ["y"], batched=False)
    with pytest.raises(ValueError, match=r"2 outputs \(a, b\).*\.npz"):
        check_output("y.npy", ["a", "b"], batched=False)
    with pytest.raises(ValueError, match="CSV cannot hold"):
        check_output("y.csv", ["y"], batched=True)


def test_write_output_npy_npz_csv(tmp_path):
    Y = np.arange(6, dtype=np.float32).reshape(3, 2)
    what = write_output(str(tmp_path / "y.npy"), Y, ["y"], True, 9)
    assert what == "array (3, 2)"
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), Y)

    outs = {"a": Y[:, :1], "b": Y}
    what = write_output(str(tmp_path / "y.npz"), outs, ["a", "b"], True, 9)
    assert what == "a (3, 1), b (3, 2)"
    with np.load(tmp_path / "y.npz") as z:
        np.testing.assert_array_equal(z["b"], Y)

    what = write_output(str(tmp_path / "y.csv"), outs, ["a", "b"], True, 9)
    assert what == "3 rows x 3 columns (a: column 0; b: columns 1-2)"
    lines = (tmp_path / "y.csv").read_text().splitlines()
    assert lines == ["a[0],b[0],b[1]", "0,0,1", "2,2,3", "4,4,5"]
    assert write_output(str(tmp_path / "n.csv"), Y, ["y"], False, 9) == "3 rows x 2 columns"
    assert (tmp_path / "n.csv").read_text().splitlines()[0] == "0,1"


def test_write_csv_precision(tmp_path):
    write_csv(str(tmp_path / "p.csv"), np.array([[1 / 3, -2e-7]]), ["u", "v"], 3)
    assert (tmp_path / "p.csv").read_text() == "u,v\n0.333,-2e-07\n"


# ---- the line protocol of `stream` -------------------------------------------------------
def test_parse_step_fills_the_buffer_or_says_why_not():
    x = np.zeros(3, np.float32)
    assert parse_step("1,2,3", x) is None
    np.testing.assert_array_equal(x, [1, 2, 3])
    assert parse_step("1,oops,3", x) == "not a row of numbers: '1,oops,3'"
    assert parse_step("1,2", x) == "expected 3 values, got 2"
    assert parse_step("1,nan,3", x) == "NaN or Inf value"
    assert parse_step("1,2,-inf", x) == "NaN or Inf value"


def test_format_row():
    assert format_row(np.array([1 / 3, 2.0, -1e-9], np.float32), "%.3g") == "0.333,2,-1e-09"


class _FakeStream:
    """Adds up its inputs (a recurrent state); refuses a step whose first value is 99."""

    def __init__(self):
        self.state = np.zeros(2, np.float32)

    def step(self, x, out):
        if x[0] == 99:
            raise ValueError("refused:\n  not this one")
        self.state += x
        out[:] = self.state
        return out


def test_stream_lines():
    feed = ["a,b\n", "1,2\n", "\n", "# note\n", "x,y\n", "1,2,3\n", "99,0\n", "1,1\n", "inf,0\n"]
    got = list(stream_lines(_FakeStream(), feed, 2, 2, precision=3, header=True))
    assert got == [(2, "1,2", None),
                   (5, None, "not a row of numbers: 'x,y'"),
                   (6, None, "expected 2 values, got 3"),
                   (7, None, "refused: not this one"),  # the stream's own message, one line
                   (8, "2,3", None),  # refused lines left the state untouched
                   (9, None, "NaN or Inf value")]
    # without `header` the first line is just a malformed line
    got = list(stream_lines(_FakeStream(), ["a,b\n", "1,2\n"], 2, 2))
    assert got == [(1, None, "not a row of numbers: 'a,b'"), (2, "1,2", None)]


def test_input_lines_decodes_leniently():
    raw = io.TextIOWrapper(io.BytesIO(b"1,2\n\xff\xfe,1\n3,4"), encoding="utf-8")
    lines = list(input_lines(raw))
    assert lines == ["1,2\n", "\ufffd\ufffd,1\n", "3,4"]
    assert list(input_lines(io.StringIO("a\nb\n"))) == ["a\n", "b\n"]  # no byte buffer


def test_imports_neither_click_nor_converters():
    tree = ast.parse(open(dataio.__file__, encoding="utf-8").read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in names if m.split(".")[0] in ("click", "converters")}
