"""Reading and writing the data files and text lines the CLI exchanges with users.

Kept apart from the click commands so that the formats (CSV with optional header, .npy,
.npz, one CSV line per streamed step) can be tested and reused without a terminal.
Every problem with user data is a ValueError/TypeError naming the file and line, which
the CLI turns into a one-line error.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

__all__ = ["parse_floats", "read_csv", "read_input", "write_csv", "fit_input", "check_output",
           "write_output", "parse_step", "format_row", "stream_lines",
           "input_lines"]

OUTPUT_SUFFIXES = (".npy", ".npz", ".csv")


def parse_floats(line: str) -> list[float]:
    """One CSV row of numbers (commas; whitespace-separated also accepted)."""
    fields = line.split(",") if "," in line else line.split()
    return [float(f) for f in fields]


def read_csv(path: str) -> np.ndarray:
    """One time step per row; a non-numeric first line is a header and skipped."""
    rows: list[list[float]] = []
    width = None
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                vals = parse_floats(line)
            except ValueError:
                if not rows and width is None:
                    width = -1  # header seen
                    continue
                raise ValueError(f"{path}: line {lineno}: not a row of numbers: "
                                 f"{line.strip()[:60]!r}") from None
            if rows and len(vals) != len(rows[0]):
                raise ValueError(f"{path}: line {lineno} has {len(vals)} values, earlier rows "
                                 f"have {len(rows[0])}")
            rows.append(vals)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return np.asarray(rows, dtype=np.float32)


def read_input(path: str) -> np.ndarray:
    """A numeric array from .npy (no pickles: the file is untrusted) or .csv/.txt."""
    low = path.lower()
    if low.endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
    elif low.endswith(".csv") or low.endswith(".txt"):
        arr = read_csv(path)
    else:
        raise ValueError(f"{path}: unknown input format (use .npy or .csv)")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{path}: data must be numeric, got dtype {arr.dtype}")
    return arr


def write_csv(path: str, Y: np.ndarray, header: Sequence[str] | None, precision: int) -> None:
    """Rows of Y as CSV with `precision` significant digits, after an optional header line."""
    fmt = f"%.{precision}g"
    with open(path, "w", encoding="utf-8", newline="") as f:
        if header:
            f.write(",".join(header) + "\n")
        for row in Y:
            f.write(",".join(fmt % v for v in row) + "\n")


def fit_input(X: np.ndarray, input_size: int, input_path: str) -> np.ndarray:
    """Accept a 1-D series for a one-feature model; reject a step width the model can't take.

    Other shape problems are left to Model.run, which names expected and received shapes.
    """
    if X.ndim == 1 and input_size == 1:
        X = X[:, None]
    if X.ndim in (2, 3) and X.shape[-1] != input_size:
        raise ValueError(f"{input_path}: each time step has {X.shape[-1]} values but the model "
                         f"takes {input_size} (data shape {X.shape})")
    return X


def check_output(output_path: str, names: Sequence[str], batched: bool) -> None:
    """Refuse, before any work is done, an output file that cannot hold the result."""
    out_low = output_path.lower()
    if not out_low.endswith(OUTPUT_SUFFIXES):
        raise ValueError(f"{output_path}: unknown output format (use .npy, .npz or .csv)")
    if out_low.endswith(".npy") and len(names) > 1:
        raise ValueError(f"the model has {len(names)} outputs ({', '.join(names)}); write them "
                         f"to .npz (one array each) or .csv (all columns side by side)")
    if out_low.endswith(".csv") and batched:
        raise ValueError("a batched (B, T, I) input gives a (B, T, O) result, which CSV cannot "
                         "hold; write .npy or .npz")


def write_output(output_path: str, Y: np.ndarray | dict, names: Sequence[str], header: bool,
                 precision: int) -> str:
    """Write a run() result as .npy, .npz (one array per output) or .csv (all outputs side
    by side, columns named output[k]); returns a short description of what was written."""
    out_low = output_path.lower()
    outs = Y if isinstance(Y, dict) else {names[0]: Y}
    if out_low.endswith(".npy"):
        np.save(output_path, np.asarray(Y))
        return f"array {np.asarray(Y).shape}"
    if out_low.endswith(".npz"):
        np.savez(output_path, **outs)
        return ", ".join(f"{k} {v.shape}" for k, v in outs.items())
    cols, spans, pos = [], [], 0
    for k, v in outs.items():
        n = v.shape[-1]
        cols += [f"{k}[{j}]" for j in range(n)]
        spans.append(f"{k}: columns {pos}-{pos + n - 1}" if n > 1 else f"{k}: column {pos}")
        pos += n
    full = np.concatenate(list(outs.values()), axis=-1)
    write_csv(output_path, full, cols if header else None, precision)
    what = f"{full.shape[0]} rows x {full.shape[1]} columns"
    if len(outs) > 1:
        what += " (" + "; ".join(spans) + ")"
    return what


def parse_step(text: str, x: np.ndarray) -> str | None:
    """Fill `x` (the step buffer, size I) from one stripped input line of `stream`.

    Returns None when x holds a usable step, else why the line is unusable (not numbers,
    wrong count, NaN/Inf), so the caller can skip it without touching the stream state.
    """
    try:
        vals = parse_floats(text)
    except ValueError:
        return f"not a row of numbers: {text[:60]!r}"
    if len(vals) != x.shape[0]:
        return f"expected {x.shape[0]} values, got {len(vals)}"
    x[:] = vals
    if not np.isfinite(x).all():
        return "NaN or Inf value"
    return None


def format_row(y: np.ndarray, fmt: str) -> str:
    """One output line of `stream` (no newline): the values of y with the %-format fmt."""
    return ",".join(fmt % v for v in y)


def stream_lines(stream: Any, lines: Iterable[str], input_size: int, output_size: int,
                 precision: int = 7, header: bool = False
                 ) -> Iterator[tuple[int, str | None, str | None]]:
    """Step `stream` through text lines, one time step per line, the state carried along.

    Yields (lineno, output, problem) for every data line: `output` is the formatted output
    line (no newline) or None when the line was refused, and then `problem` says why; a
    refused line leaves the state untouched. Blank lines, '#' comments and (with `header`)
    the first data line are passed over silently; line numbers count physical lines. What
    to do about a problem (skip, stop) and where output goes is the caller's business.
    """
    x = np.zeros(input_size, np.float32)
    y = np.zeros(output_size, np.float32)
    fmt = f"%.{precision}g"
    skip_header = header
    lineno = 0
    for line in lines:
        lineno += 1
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if skip_header:
            skip_header = False
            continue
        problem = parse_step(text, x)
        if problem is None:
            try:
                stream.step(x, out=y)
            except ValueError as e:  # the stream refused the step; state untouched
                problem = " ".join(str(e).split()) or type(e).__name__
        if problem is not None:
            yield lineno, None, problem
        else:
            yield lineno, format_row(y, fmt), None


def input_lines(f: Any) -> Iterator[str]:
    """The lines of a text stream such as stdin, each returned as soon as it arrives.

    Reads bytes and decodes leniently where the stream has a byte buffer: a garbled line
    is then reported and skipped like any other malformed line instead of ending the
    stream with a decode error.
    """
    raw = getattr(f, "buffer", None)
    if raw is not None:
        return iter(lambda: raw.readline().decode("utf-8", "replace"), "")
    return iter(f.readline, "")
