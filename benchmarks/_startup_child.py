"""Child process of the start-up benchmark (run by path, never imported by the suite).

    python _startup_child.py ENGINE MODEL_PATH OP LAYERS INPUT HIDDEN

Imports the engine, loads the model, produces one output, and prints one JSON line of
CLOCK_MONOTONIC timestamps (ns; comparable with the parent's time.monotonic_ns()) and the
process's peak resident memory at that point (VmHWM, MiB; None where unavailable).
"""
import time

_t_start = time.monotonic_ns()

import json  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    engine, path, op = sys.argv[1], sys.argv[2], sys.argv[3]
    layers, I, H = (int(a) for a in sys.argv[4:7])
    if engine == "lstm-infer":
        import numpy as np
        import lstm_infer
        t_import = time.monotonic_ns()
        m = lstm_infer.load(path)
        t_load = time.monotonic_ns()
        y = m.stream().step(np.zeros(I, np.float32))
    elif engine == "onnxruntime":
        import numpy as np
        import onnxruntime as ort
        t_import = time.monotonic_ns()
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        t_load = time.monotonic_ns()
        feeds = {i.name: np.zeros((1, 1, H), np.float32) for i in sess.get_inputs() if i.name != "x"}
        feeds["x"] = np.zeros((1, 1, I), np.float32)
        y = sess.run(["y"], feeds)[0]
    elif engine == "torch":
        import torch
        from torch import nn
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        t_import = time.monotonic_ns()

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = (nn.LSTM if op == "LSTM" else nn.GRU)(I, H, num_layers=layers)
                self.fc = nn.Linear(H, I)

        net = Net()
        net.load_state_dict(torch.load(path, weights_only=True))
        net.eval()
        t_load = time.monotonic_ns()
        with torch.inference_mode():
            h, _ = net.rnn(torch.zeros(1, 1, I))
            y = net.fc(h)
    else:
        raise SystemExit(f"unknown engine {engine}")
    t_out = time.monotonic_ns()
    assert y is not None
    print(json.dumps({"t_start": _t_start, "t_import": t_import, "t_load": t_load, "t_output": t_out,
                      "peak_rss_mib": peak_rss_mib()}), flush=True)


def peak_rss_mib():
    """This process image's peak resident memory (VmHWM), MiB; None where unavailable.
    Not getrusage's ru_maxrss: that survives exec, so a child of a big parent reports the
    parent's resident size at fork time."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


if __name__ == "__main__":
    main()
