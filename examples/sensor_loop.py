"""A sensor loop with lstm-infer: copy this and replace read_sensor() with your device.

    python examples/sensor_loop.py                      # the bundled model
    python examples/sensor_loop.py my_model.lstm        # yours (lstm-infer convert ... -o my_model.lstm)

The bundled examples/models/sensor_lstm.lstm is examples/models/sensor_lstm.pt converted with
`lstm-infer convert examples/models/sensor_lstm.pt -o examples/models/sensor_lstm.lstm`.

Needs only numpy + numba + lstm-infer at run time (no torch). Shows step(), the NaN guard,
get_state()/set_state() (checkpoint and restore the recurrent state, e.g. across a
restart or to try "what if" inputs without disturbing the live stream) and reset().
"""
import math
import random
import sys
import time

import numpy as np

import lstm_infer

BUNDLED = __file__.rsplit("/", 1)[0] + "/models/sensor_lstm.lstm"


def read_sensor(t: int, n: int) -> list:
    """Stand-in for a real device: n channels of a noisy sine, and now and then a NaN."""
    if t == 150:
        return [float("nan")] * n
    return [math.sin(2 * math.pi * t / 50) + 0.05 * random.gauss(0, 1) for _ in range(n)]


def main(path: str, steps: int = 300) -> None:
    model = lstm_infer.load(path)            # validates the file, then memory-maps it
    print(model)
    stream = model.stream()                  # one stateful stream; state lives in the engine
    x = np.zeros(model.input_size, np.float32)
    y = np.zeros(model.output_size, np.float32)

    for t in range(steps):
        x[:] = read_sensor(t, model.input_size)
        try:
            stream.step(x, out=y)            # one compiled call; writes into y, no allocation
        except ValueError as e:              # NaN/Inf reading: rejected, state untouched
            print(f"t={t}: bad reading skipped ({e})")
            continue
        if t % 50 == 0:
            print(f"t={t:4d}  input {x[0]:+.3f}  output {np.array2string(y, precision=3)}")

        if t == 200:
            # Checkpoint: a dict of named numpy arrays (copies): '<layer>.h', '<layer>.c'.
            saved = stream.get_state()
            print("checkpoint:", {k: v.shape for k, v in saved.items()})
            # Try a hypothetical input without disturbing the live stream, then restore.
            what_if = stream.step(np.full(model.input_size, 3.0, np.float32))
            stream.set_state(saved)          # exact round trip
            print(f"what-if output for a reading of 3.0: {np.array2string(what_if, precision=3)}")
            # (np.savez("state.npz", **saved) + stream.set_state(dict(np.load("state.npz")))
            #  carries the state across a restart the same way.)

    stream.reset()                           # back to the initial state, e.g. a new session
    stream.step(x, out=y)
    print(f"after reset: output {np.array2string(y, precision=3)}")

    # Latency of the loop body, measured the same way.
    times = []
    for t in range(steps, steps + 1000):
        x[:] = read_sensor(t, model.input_size)
        t0 = time.perf_counter_ns()
        stream.step(x, out=y)
        times.append(time.perf_counter_ns() - t0)
    print(f"step latency: median {np.median(times) / 1e3:.1f} µs, "
          f"p99 {np.percentile(times, 99) / 1e3:.1f} µs")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    main(sys.argv[1] if len(sys.argv) == 2 else BUNDLED)
