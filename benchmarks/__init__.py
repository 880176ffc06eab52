"""Latency and throughput benchmarks: lstm-infer against PyTorch and ONNX Runtime.

    python -m benchmarks.run            # the full suite (7-9 minutes on 2 cores)
    python -m benchmarks.run --quick    # a subset (1-2 minutes)
    python -m benchmarks.run --only per_step,chunk

Every engine runs the same random-weight model (built once in PyTorch, exported by hand
to ONNX and to a `.lstm` file), is checked against the others on a short sequence before
anything is timed, and is timed in the same process, interleaved with the others.
Results go to benchmarks/results/ (latest.json, latest.md, latest.png).
"""
