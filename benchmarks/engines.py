"""One small adapter per engine, with the same four entry points each.

Every adapter prepares its inputs ahead of time in the engine's own format (a numpy
(I,) vector for lstm-infer, a (1, 1, I) array for onnxruntime, a torch tensor for
PyTorch), so the timed call is the engine's own call and nothing else; outputs are
returned as the engine returns them and converted to numpy only for the agreement check.

    step:  new_stepper() -> f(x) -> y      one time step, state carried inside f
    chunk: new_chunker() -> f(X) -> Y      T steps of one stream, state carried across calls
    run:   run(X) -> Y                     stateless, whole sequences, batch B
    pool:  new_pool(n) -> f(X) -> Y        n independent streams, one step each

Thread settings (the issue's rules): PyTorch `torch.set_num_threads(1)` (and one
inter-op thread) under `torch.inference_mode()`; onnxruntime with one intra-op and one
inter-op thread, spinning disabled, sequential execution; lstm-infer as it comes: its
kernels are single-threaded Numba code, run()'s input projections included (the
`matmat_acc` kernel since 7801957), so no BLAS library is called on any timed path.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .models import Bundle

__all__ = ["ENGINES", "LABELS", "make_engine", "configure_torch", "ort_session_options",
           "thread_settings"]

LABELS = {
    "lstm-infer": "lstm-infer",
    "onnxruntime": "onnxruntime",
    "torch-cell": "PyTorch cells",
    "torch-rnn": "PyTorch nn.LSTM/GRU",
    "xlstm-package": "xlstm package step()",
    "torch-prefix": "PyTorch on the prefix",
    "torch-convlstm": "PyTorch cell loop",
    "keras-predict": "Keras predict()",
    "keras-call": "Keras model(x)",
}
ENGINES = ("lstm-infer", "onnxruntime", "torch-cell", "torch-rnn")

_torch_configured = False


def configure_torch():
    import torch
    global _torch_configured
    if not _torch_configured:
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or inter-op work already started
            pass
        _torch_configured = True
    return torch


def ort_session_options():
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so


def thread_settings() -> dict:
    out = {}
    try:
        torch = configure_torch()
        out["torch"] = {"num_threads": torch.get_num_threads(),
                        "num_interop_threads": torch.get_num_interop_threads(),
                        "inference_mode": True}
    except ImportError:
        pass
    try:
        import onnxruntime as ort
        so = ort_session_options()
        out["onnxruntime"] = {
            "intra_op_num_threads": so.intra_op_num_threads,
            "inter_op_num_threads": so.inter_op_num_threads,
            "session.intra_op.allow_spinning": so.get_session_config_entry("session.intra_op.allow_spinning"),
            "session.inter_op.allow_spinning": so.get_session_config_entry("session.inter_op.allow_spinning"),
            "execution_mode": str(so.execution_mode),
            "graph_optimization_level": str(so.graph_optimization_level),
            "providers": ["CPUExecutionProvider"]}
    except ImportError:
        pass
    import numba
    out["lstm-infer"] = {"settings": "defaults", "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
                         "kernels": "single-threaded (no parallel=True kernels)",
                         "input_projection": "run(): single-threaded Numba kernels "
                                             "(no BLAS call)"}
    return out


class Engine:
    name = ""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.spec = bundle.spec

    def context(self):
        return contextlib.nullcontext()

    # Each method below raises NotImplementedError where an engine has no such mode.


class LstmInferEngine(Engine):
    name = "lstm-infer"

    def __init__(self, bundle: Bundle):
        super().__init__(bundle)
        import lstm_infer
        self.model = lstm_infer.load(bundle.lstm_path)

    # step
    def step_inputs(self, X):
        return [np.ascontiguousarray(x) for x in X]

    def new_stepper(self):
        return self.model.stream().step

    def step_out(self, y):
        return np.asarray(y)

    # chunk
    def chunk_input(self, X):
        return np.ascontiguousarray(X)

    def new_chunker(self):
        return self.model.stream().step_many

    def chunk_out(self, Y):
        return np.asarray(Y)

    # run
    def seq_input(self, X):  # X (B, T, I); batch 1 is passed as (T, I)
        return np.ascontiguousarray(X[0] if X.shape[0] == 1 else X)

    def run(self, X):
        return self.model.run(X)

    def seq_out(self, Y):
        Y = np.asarray(Y)
        return Y[None] if Y.ndim == 2 else Y

    # pool
    def pool_input(self, X):
        return np.ascontiguousarray(X)

    def new_pool(self, n):
        return self.model.streams(n).step

    def pool_out(self, Y):
        return np.asarray(Y)


class OrtEngine(Engine):
    name = "onnxruntime"

    def __init__(self, bundle: Bundle):
        super().__init__(bundle)
        import onnxruntime as ort
        self.sess = ort.InferenceSession(bundle.onnx_path, sess_options=ort_session_options(),
                                         providers=["CPUExecutionProvider"])
        self.state_in = [i.name for i in self.sess.get_inputs() if i.name != "x"]
        self.outputs = [o.name for o in self.sess.get_outputs()]
        assert self.outputs[0] == "y" and len(self.outputs) == 1 + len(self.state_in)

    def _zero_state(self, B: int) -> dict:
        return {s: np.zeros((1, B, self.spec.hidden_size), np.float32) for s in self.state_in}

    def _stateful(self, B: int):
        run, outs, names = self.sess.run, self.outputs, self.state_in
        feeds = self._zero_state(B)
        pairs = list(enumerate(names, start=1))

        def f(x):
            feeds["x"] = x
            r = run(outs, feeds)
            for k, name in pairs:
                feeds[name] = r[k]
            return r[0]
        return f

    # step: x (1, 1, I), state (1, 1, H) in and out of every call
    def step_inputs(self, X):
        return [np.ascontiguousarray(x.reshape(1, 1, -1)) for x in X]

    def new_stepper(self):
        return self._stateful(1)

    def step_out(self, y):
        return y.reshape(-1)

    # chunk: the ONNX LSTM/GRU node over the whole chunk, state in and out
    def chunk_input(self, X):
        return np.ascontiguousarray(X[:, None, :])

    def new_chunker(self):
        return self._stateful(1)

    def chunk_out(self, Y):
        return Y[:, 0, :]

    # run: (T, B, I), zero initial state
    def seq_input(self, X):
        return {"x": np.ascontiguousarray(X.transpose(1, 0, 2)), **self._zero_state(X.shape[0])}

    def run(self, feeds):
        return self.sess.run(self.outputs[:1], feeds)[0]

    def seq_out(self, Y):
        return Y.transpose(1, 0, 2)

    # pool: batch n, one step
    def pool_input(self, X):
        return np.ascontiguousarray(X[None])

    def new_pool(self, n):
        return self._stateful(n)

    def pool_out(self, Y):
        return Y[0]


class _TorchEngine(Engine):
    def __init__(self, bundle: Bundle):
        super().__init__(bundle)
        self.torch = configure_torch()
        self.net = bundle.net

    def context(self):
        return self.torch.inference_mode()

    def _t(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a, np.float32))

    def _zeros(self, *shape):
        return self.torch.zeros(*shape, dtype=self.torch.float32)


class TorchCellEngine(_TorchEngine):
    """nn.LSTMCell / nn.GRUCell per layer (weights copied from the nn.LSTM/GRU) + nn.Linear."""
    name = "torch-cell"

    def __init__(self, bundle: Bundle):
        super().__init__(bundle)
        torch, nn = self.torch, self.torch.nn
        s, rnn = self.spec, self.net.rnn
        cls = nn.LSTMCell if s.op == "LSTM" else nn.GRUCell
        self.cells = []
        with torch.no_grad():
            for k in range(s.layers):
                cell = cls(s.input_size if k == 0 else s.hidden_size, s.hidden_size)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(rnn, f"{name}_l{k}"))
                cell.eval()
                self.cells.append(cell)
        self.fc = self.net.fc

    def _stepper(self, B: int):
        H, fc = self.spec.hidden_size, self.fc
        if self.spec.op == "LSTM":
            state = [(self._zeros(B, H), self._zeros(B, H)) for _ in self.cells]
            cells = list(enumerate(self.cells))

            def f(x):
                for k, cell in cells:
                    state[k] = hc = cell(x, state[k])
                    x = hc[0]
                return fc(x)
        else:
            state = [self._zeros(B, H) for _ in self.cells]
            cells = list(enumerate(self.cells))

            def f(x):
                for k, cell in cells:
                    state[k] = x = cell(x, state[k])
                return fc(x)
        return f

    def step_inputs(self, X):
        return [self._t(x.reshape(1, -1)) for x in X]

    def new_stepper(self):
        return self._stepper(1)

    def step_out(self, y):
        return y.numpy().reshape(-1)

    def pool_input(self, X):
        return self._t(X)

    def new_pool(self, n):
        return self._stepper(n)

    def pool_out(self, Y):
        return Y.numpy()


class TorchRnnEngine(_TorchEngine):
    """nn.LSTM / nn.GRU (all layers) + nn.Linear, seq-first."""
    name = "torch-rnn"

    def _stateful(self):
        rnn, fc = self.net.rnn, self.net.fc
        box = [None]

        def f(x):
            y, box[0] = rnn(x, box[0])
            return fc(y)
        return f

    def step_inputs(self, X):
        return [self._t(x.reshape(1, 1, -1)) for x in X]

    def new_stepper(self):
        return self._stateful()

    def step_out(self, y):
        return y.numpy().reshape(-1)

    def chunk_input(self, X):
        return self._t(X[:, None, :])

    def new_chunker(self):
        return self._stateful()

    def chunk_out(self, Y):
        return Y.numpy()[:, 0, :]

    def seq_input(self, X):
        return self._t(X.transpose(1, 0, 2))

    def run(self, X):
        return self.net(X)[0]

    def seq_out(self, Y):
        return Y.numpy().transpose(1, 0, 2)


_CLASSES = {c.name: c for c in (LstmInferEngine, OrtEngine, TorchCellEngine, TorchRnnEngine)}


def make_engine(name: str, bundle: Bundle) -> Engine:
    return _CLASSES[name](bundle)
