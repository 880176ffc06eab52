"""The `lstm-infer` command line: convert, inspect, run, stream, verify, bench, score, compile.

A thin layer: argument parsing, printing and exit codes. The work is done by library
modules (bench, dataio, precompile, summary, score; the converters for convert/verify, imported
only when those run, so the runtime commands need only numpy + numba + click). Every
user-facing failure is one line on stderr and exit code 1; `--debug` shows the traceback.
"""
from __future__ import annotations

import json
import os
import sys
import time

import click
import numpy as np

import lstm_infer
from lstm_infer.bench import bench_model, format_bench, latency_stats, max_abs_difference
from lstm_infer.dataio import (check_output, fit_input, input_lines, read_input, stream_lines,
                               write_output)
from lstm_infer.errors import ModelFormatError, NotStreamableError
from lstm_infer.ops.embedding import example_inputs
from lstm_infer.precompile import compile_kernels
from lstm_infer.summary import describe, format_details

# bench_model, latency_stats, compile_kernels: public here before they moved; re-exported.
__all__ = ["main", "cli", "bench_model", "latency_stats", "compile_kernels"]

# Exceptions that mean "bad input, bad model or bad environment", not "bug in lstm-infer".
# ModelFormatError and converters.ConversionError are ValueErrors.
USER_ERRORS = (ValueError, TypeError, OSError, NotStreamableError, ModelFormatError)

_EXTRAS = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnx", "h5py": "keras"}
_EXISTING_FILE = click.Path(exists=True, dir_okay=False)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        msg = e.strerror + (f": {e.filename}" if e.filename else "")
    else:
        msg = str(e).strip()
    msg = " ".join(msg.split())  # one line, whatever the exception carried
    return msg or type(e).__name__


class _LstmInferCLI(click.Group):
    """A click Group that turns user errors into one line on stderr and exit code 1."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        try:
            rv = super().main(args=argv, prog_name=prog_name or "lstm-infer",
                              complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            rv = 130
        except click.ClickException as e:  # usage errors, bad option values, our own messages
            if debug and e.__cause__ is not None:
                raise
            msg = " ".join(e.format_message().split())
            if isinstance(e, click.UsageError) and not isinstance(e, click.BadParameter):
                cmd = e.ctx.command_path if e.ctx is not None else "lstm-infer"
                msg += f" (see '{cmd} --help')"
            click.echo(f"error: {msg}", err=True)
            rv = 1
        except USER_ERRORS as e:
            if debug:
                raise
            click.echo(f"error: {_one_line(e)}", err=True)
            rv = 1
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group("lstm-infer", cls=_LstmInferCLI, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(lstm_infer.__version__, "--version", prog_name="lstm-infer",
                      message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True,
              help="Show the full Python traceback when a command fails "
                   "(by default a failure is one line on stderr and exit code 1).")
def cli(debug: bool) -> None:
    """Low-latency stateful inference for LSTM/GRU/RNN models (Numba kernels).

    Typical use: convert a trained model once, then run or stream it.

    \b
      lstm-infer convert model.pt2 -o model.lstm
      lstm-infer inspect model.lstm
      lstm-infer run model.lstm --input X.npy --output Y.npy
      sensor_reader | lstm-infer stream model.lstm
      lstm-infer bench model.lstm

    Exit codes: 0 success, 1 bad input or model (one line on stderr; --debug for the
    traceback).
    """


# ---- convert / verify (need the converters and torch/onnx; imported lazily) ----------
def _missing_extra(e: ImportError, src: str) -> click.ClickException:
    name = (e.name or "").split(".")[0]
    if name in _EXTRAS:
        extra = _EXTRAS[name]
        return click.ClickException(
            f"{src}: this needs the '{name}' package, which is not installed; "
            f"install it with: pip install 'lstm-infer[{extra}]'")
    if (e.name or "").startswith("converters"):
        return click.ClickException(
            f"{src}: no importer for this kind of file in this installation ({e.name} is missing)")
    return click.ClickException(f"{src}: import failed: {_one_line(e)}")


def _converters():
    try:
        import converters
    except ImportError as e:  # pragma: no cover - the converters ship in the same wheel
        raise click.ClickException(f"the converters package is not importable: {_one_line(e)}")
    return converters


def _list_ops(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    try:
        from converters.onnx_import import CONSTANT_ONLY_OPS, SUPPORTED_OPS
    except ImportError as e:
        raise _missing_extra(e, "model.onnx") from e
    click.echo("ONNX ops supported by `lstm-infer convert`:")
    click.echo("  " + " ".join(SUPPORTED_OPS))
    click.echo("Only when all their inputs are constants (folded at conversion):")
    click.echo("  " + " ".join(CONSTANT_ONLY_OPS))
    ctx.exit(0)


def _pairs(values: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise click.BadParameter(f"{v!r}: expected NAME=VALUE", param_hint=what)
        out.append((name, rest))
    return out


@cli.command()
@click.argument("src", type=_EXISTING_FILE)
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The .lstm file to write.")
@click.option("--list-ops", is_flag=True, is_eager=True, expose_value=False, callback=_list_ops,
              help="Print the ONNX ops the converter supports and exit.")
@click.option("--state", "state", multiple=True, metavar="IN=OUT",
              help="ONNX: keep the recurrent state that graph input IN receives and output OUT "
                   "returns inside the engine (pairs like initial_h/Y_h are found automatically). "
                   "Repeatable.")
@click.option("--fix", "fix", multiple=True, metavar="NAME=VALUE",
              help="ONNX: bind graph input NAME to a constant: a number, a JSON list, or a .npy "
                   "file. Repeatable.")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
              show_default=True, help="Weight storage type in the written file.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Compare the converted model with the source model on random inputs (whole "
                   "sequence and step by step) and print the max error. A max error above the "
                   "tolerance makes the command exit with 1 and OUT is not written.")
@click.option("--rnn-nonlinearity", type=click.Choice(["tanh", "relu"]), default=None,
              help="For state_dict files holding an nn.RNN: its nonlinearity, which a "
                   "state_dict does not record (the importer's default is tanh).")
def convert(src: str, out: str, dtype: str, verify: bool, rnn_nonlinearity: str | None,
            state: tuple[str, ...], fix: tuple[str, ...]) -> None:
    """Convert SRC to the compact .lstm format.

    SRC is an ONNX model (.onnx), a torch.export program (.pt2), a PyTorch state_dict
    file (.pt/.pth) of standard modules (LSTM/GRU/RNN/Linear/...), or a Keras model
    (.keras, .h5; read without TensorFlow). PyTorch sources need
    `pip install 'lstm-infer[torch]'`, ONNX sources `pip install 'lstm-infer[onnx]'`,
    Keras sources `pip install 'lstm-infer[keras]'` (plus keras to verify).
    """
    converters = _converters()
    options: dict = {}
    if rnn_nonlinearity is not None:
        options["rnn_nonlinearity"] = rnn_nonlinearity
    if (state or fix) and not src.lower().endswith(".onnx"):
        raise click.UsageError("--state and --fix apply to ONNX sources only")
    if state:
        options["state"] = _pairs(state, "--state")
    if fix:
        options["fix"] = dict(_pairs(fix, "--fix"))
    try:
        report = converters.convert_file(src, out, dtype=dtype, verify=verify, **options)
    except ImportError as e:
        raise _missing_extra(e, src) from e
    except converters.VerificationError as e:
        if e.report is not None and e.report.verify is not None:
            click.echo(str(e.report.verify))
        raise click.ClickException(str(e)) from e
    click.echo(str(report))
    if report.verify is None:
        click.echo("verification skipped (--no-verify)" if not verify else
                   "verification: the converter returned no report")
        return
    if not report.verify.ok:
        raise click.ClickException(
            f"max abs error {report.verify.max_abs_error:.3g} is above the tolerance "
            f"{report.verify.tolerance:g}; {out} does not match {src}")


@cli.command()
@click.argument("file", type=_EXISTING_FILE)
@click.argument("src", type=_EXISTING_FILE)
@click.option("--input", "input_path", type=_EXISTING_FILE, default=None,
              help="Also compare on this input: .npy of shape (T, I) or (B, T, I), or .csv "
                   "with one time step per row.")
@click.option("--tolerance", type=float, default=None,
              help="Max abs error allowed (default: the verifier's, 1e-4 for fp32).")
def verify(file: str, src: str, input_path: str | None, tolerance: float | None) -> None:
    """Compare the .lstm FILE numerically with its source model SRC.

    Runs both on random inputs (and on --input) as whole sequences and step by step and
    prints the max abs/rel error per output. Exit code 1 when the error is above the
    tolerance.
    """
    converters = _converters()
    inputs = read_input(input_path) if input_path else None
    try:
        report = converters.verify_file(file, src, inputs=inputs)
    except ImportError as e:
        raise _missing_extra(e, src) from e
    if tolerance is not None:
        report.tolerance = tolerance
    click.echo(str(report))
    if not report.ok:
        raise click.ClickException(
            f"max abs error {report.max_abs_error:.3g} is above the tolerance {report.tolerance:g}")


# ---- inspect -------------------------------------------------------------------------
@cli.command()
@click.argument("file", type=_EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON object (path, file_size, dtype, input/output sizes, "
                   "parameters, layers, state, streamable, provenance) instead of text.")
def inspect(file: str, as_json: bool) -> None:
    """Show a .lstm file: layers, sizes, parameter count, dtype, file size, provenance,
    recurrent state names/sizes and whether it can stream."""
    m = lstm_infer.load(file)
    info = describe(m)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(m.summary())  # Model.summary() is summary.format_summary()
    click.echo(format_details(info))


@cli.command()
@click.argument("src", type=_EXISTING_FILE)
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the compressed .lstm file.")
@click.option("--dtype", type=click.Choice(["fp16", "int8"]), required=True,
              help="fp16: weight matrices stored as float16, computed in float32. int8: "
                   "symmetric int8 with one scale per output unit, read directly by the kernels.")
def quantize(src: str, out: str, dtype: str) -> None:
    """Compress the weights of an fp32 .lstm file SRC (biases and norms stay fp32) and
    print the size and the largest output difference from SRC on random inputs."""
    from .quantize import quantize_file
    quantize_file(src, out, dtype)
    a, b = lstm_infer.load(src), lstm_infer.load(out)
    X = example_inputs(a.graph, (4, 200, a.input_size), np.random.default_rng(0))
    err = max_abs_difference(a.run(X), b.run(X))
    click.echo(f"wrote {out}: {os.path.getsize(out):,} bytes ({os.path.getsize(src):,} as fp32), "
               f"weights {b.compression_ratio():.2f}x smaller")
    click.echo(f"max abs difference from {src} on random unit-scale inputs: {err:.3g}")


# ---- run -----------------------------------------------------------------------------
@cli.command()
@click.argument("file", type=_EXISTING_FILE)
@click.option("-i", "--input", "input_path", required=True, type=_EXISTING_FILE,
              help="Input data: .npy of shape (T, I) or a batch (B, T, I) (1-D (T,) is "
                   "accepted when I == 1), or .csv with one time step per row (a "
                   "non-numeric first line is a header and skipped).")
@click.option("-o", "--output", "output_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the result: .npy (one output), .npz (one array per "
                   "output, named after it), or .csv (one row per time step; a model with "
                   "several outputs writes all their columns side by side, the header line "
                   "names each column as output[k]).")
@click.option("--header/--no-header", default=True, show_default=True,
              help="Write a header line with the column names (CSV output only).")
@click.option("--precision", type=click.IntRange(1, 17), default=9, show_default=True,
              help="Significant digits in CSV output.")
def run(file: str, input_path: str, output_path: str, header: bool, precision: int) -> None:
    """Whole-sequence inference: every time step of --input through the model FILE.

    Stateless: each sequence (or each batch row) starts from the model's initial state.
    """
    m = lstm_infer.load(file)
    X = fit_input(read_input(input_path), m.input_size, input_path)
    names = m.output_names
    check_output(output_path, names, batched=X.ndim == 3)
    t0 = time.perf_counter()
    Y = m.run(X)
    dt = time.perf_counter() - t0
    what = write_output(output_path, Y, names, header, precision)
    steps = X.shape[-2] * (X.shape[0] if X.ndim == 3 else 1)
    click.echo(f"wrote {output_path}: {what}; {steps} steps in {dt * 1e3:.1f} ms", err=True)


# ---- stream --------------------------------------------------------------------------
@cli.command()
@click.argument("file", type=_EXISTING_FILE)
@click.option("--on-error", type=click.Choice(["skip", "stop"]), default="skip",
              show_default=True,
              help="What to do with a malformed line (not numbers, wrong count) or a NaN/Inf "
                   "value: report it on stderr with its line number, then 'skip' it (the state "
                   "is left untouched and no output line is written) or 'stop' with exit code 1.")
@click.option("--precision", type=click.IntRange(1, 17), default=7, show_default=True,
              help="Significant digits of each output value.")
@click.option("--header", is_flag=True,
              help="The first non-blank input line is a header: skip it without a report.")
def stream(file: str, on_error: str, precision: int, header: bool) -> None:
    """Stream stdin through the model FILE, one time step per line.

    Each input line holds the I input values of one time step as comma-separated floats;
    for each one, one line of comma-separated outputs (all outputs side by side) is written
    to stdout and flushed at once. The recurrent state is carried from line to line.
    Blank lines and lines starting with '#' are ignored. Stop with end of input (Ctrl-D).
    """
    m = lstm_infer.load(file)
    s = m.stream()
    stdout = sys.stdout
    lines = stream_lines(s, input_lines(sys.stdin), m.input_size, m.output_size, precision,
                         header)
    n_bad = 0
    try:
        for lineno, out, problem in lines:
            if problem is None:
                stdout.write(out + "\n")
                stdout.flush()
                continue
            n_bad += 1
            if on_error == "stop":
                click.echo(f"error: line {lineno}: {problem}; stopping", err=True)
                sys.exit(1)
            sys.stderr.write(f"warning: line {lineno}: {problem}; skipped\n")
            sys.stderr.flush()
    except KeyboardInterrupt:
        stdout.flush()
        sys.exit(130)
    if n_bad:
        click.echo(f"{n_bad} line(s) skipped", err=True)


# ---- bench ---------------------------------------------------------------------------
@cli.command()
@click.argument("file", type=_EXISTING_FILE)
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Timed stream.step calls (random inputs); also the run() sequence length.")
@click.option("--warmup", type=click.IntRange(min=0), default=200, show_default=True,
              help="Untimed calls before timing starts.")
@click.option("--chunk", type=click.IntRange(min=1), default=256, show_default=True,
              help="Steps per step_many call for the chunked measurement.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the results as JSON (keys: step {median_us, p99_us, max_us, "
                   "mean_us, steps_per_s}, step_many {chunk, per_step_us, steps_per_s}, run, "
                   "load_ms, first_step_ms, environment, ...).")
def bench(file: str, steps: int, warmup: int, chunk: int, as_json: bool) -> None:
    """Per-step latency of the model FILE as seen from Python.

    Times each stream.step call (median, p99, max in µs, and steps/s), the per-step cost
    of step_many over a chunk, and of a stateless run() over a whole sequence.
    Comparisons against ONNX Runtime / PyTorch in the same run are not implemented yet;
    see benchmarks/ for those.
    """
    r = bench_model(file, steps=steps, warmup=warmup, chunk=chunk)
    click.echo(json.dumps(r, indent=2) if as_json else format_bench(r))


# ---- score (Dask; imported only when it runs) ----------------------------------------
@cli.command()
@click.argument("file", type=_EXISTING_FILE)
@click.argument("data")
@click.option("--by", required=True, metavar="ID", help="Column that identifies a series.")
@click.option("--time", "time_col", required=True, metavar="COL",
              help="Column that orders the rows of a series in time.")
@click.option("--features", required=True, metavar="a,b,...",
              help="Comma-separated feature columns, in the model's input order.")
@click.option("--out", required=True, help="Parquet directory to write (one file per partition).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="A running Dask scheduler (tcp://host:8786); default: a local cluster.")
@click.option("--workers", "n_workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the local cluster (default: one per CPU core).")
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="Partitions to group the series into (default: the dataset's, at least "
                   "two per worker).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar on stderr.")
def score(file: str, data: str, by: str, time_col: str, features: str, out: str,
          scheduler: str | None, n_workers: int | None, partitions: int | None,
          progress: bool) -> None:
    """Score every series of the Parquet dataset DATA (a file, a directory or a glob)
    with the model FILE on Dask.

    Rows sharing one --by id form a series; each series runs from the model's initial
    state in --time order, never split across workers. The rows are written to --out
    with the outputs added as columns (out_0, out_1, ...; a model with several outputs:
    <name>_<k>). Needs `pip install 'lstm-infer[dask]'`.
    """
    from .score import score as score_dataset
    try:
        r = score_dataset(file, data, by, time_col, [f.strip() for f in features.split(",")
                                                     if f.strip()],
                          out, scheduler=scheduler, n_workers=n_workers, progress=progress,
                          npartitions=partitions)
    except ImportError as e:
        raise click.ClickException(_one_line(e)) from e
    click.echo(f"wrote {r['out']}: {r['rows']:,} rows in {r['partitions']} files, columns "
               f"{', '.join(r['columns'])}; {r['seconds']:.1f} s", err=True)


# ---- compile -------------------------------------------------------------------------
@cli.command("compile")
@click.argument("models", nargs=-1, type=_EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def compile_cmd(models: tuple[str, ...], as_json: bool) -> None:
    """Precompile every Numba kernel into the on-disk cache.

    Builds tiny built-in models that together use every op kind (LSTM with and without
    projection, GRU both reset variants, RNN tanh/relu, Linear, Activation, LayerNorm,
    Concat, Add, Mul, Scale, Binary, Gather, Conv1d, Reduce, ONNX gate activations,
    clip, peepholes, reverse layers) and calls run, stream().step, step_many and
    streams(2).step once, so a deployed device never compiles on first use. MODELS
    (optional .lstm files) are exercised the same way. Run it once after installing, as
    the user that will run the models (the cache must be writable; set NUMBA_CACHE_DIR
    to choose the location).
    """
    r = compile_kernels(models)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"kernels ready in {r['seconds']:.2f} s; Numba cache: {r['cache_dir']} "
               f"({r['cache_files']} files, {r['new_cache_files']} new)")


def main() -> None:
    """Console-script entry point (`lstm-infer`)."""
    cli.main(prog_name="lstm-infer")


if __name__ == "__main__":
    main()
