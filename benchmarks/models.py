"""One random-weight model, three engines: a PyTorch module, a hand-built ONNX graph and
a `.lstm` file written with GraphBuilder, all from the same float32 weights.

The PyTorch module (nn.LSTM/nn.GRU + nn.Linear, default PyTorch initialisation from a
fixed seed) is the source of truth; the other two are converted from its weights here,
independently of `converters/`:

* ONNX: one LSTM/GRU node per layer (gate order i,o,f,c / z,r,h, GRU with
  linear_before_reset=1), initial_h/initial_c as graph inputs and Y_h/Y_c as graph
  outputs so that state can be passed in and out, Squeeze of the num_directions axis
  between layers, then MatMul + Add for the head. Layout 0: X is (T, B, I).
* lstm-infer: `weight.T` matrices, LSTM bias = bias_ih + bias_hh, GRU b_ih/b_hh kept
  apart (see docs/FORMAT.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["ModelSpec", "Bundle", "build_bundle", "torch_module"]


@dataclass(frozen=True)
class ModelSpec:
    op: str        # "LSTM" | "GRU"
    layers: int
    input_size: int
    hidden_size: int
    seed: int = 0

    @property
    def output_size(self) -> int:
        # A next-step prediction head: as many outputs as inputs.
        return self.input_size

    @property
    def key(self) -> str:
        return f"{self.op.lower()}{self.layers}_{self.input_size}x{self.hidden_size}"

    @property
    def label(self) -> str:
        return f"{self.op} {self.layers}L ({self.input_size},{self.hidden_size})"

    @property
    def gates(self) -> int:
        return 4 if self.op == "LSTM" else 3

    def flops_per_step(self) -> int:
        """Multiply-adds x 2 of one time step of one sequence (matrices only)."""
        I, H, G = self.input_size, self.hidden_size, self.gates
        f = 0
        for k in range(self.layers):
            f += 2 * ((I if k == 0 else H) + H) * G * H
        return f + 2 * H * self.output_size

    def as_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "op": self.op, "layers": self.layers,
                "input_size": self.input_size, "hidden_size": self.hidden_size,
                "output_size": self.output_size, "seed": self.seed}


def torch_module(spec: ModelSpec, dtype=None):
    """nn.Module: recurrent stack (seq-first) + Linear head, weights from spec.seed."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            rnn = nn.LSTM if spec.op == "LSTM" else nn.GRU
            self.rnn = rnn(spec.input_size, spec.hidden_size, num_layers=spec.layers)
            self.fc = nn.Linear(spec.hidden_size, spec.output_size)

        def forward(self, x, state=None):
            y, state = self.rnn(x, state)
            return self.fc(y), state

    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(spec.seed)
        net = Net()
    net.eval()
    if dtype is not None:
        net = net.to(dtype)
    return net


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _layer_weights(net, k: int) -> dict[str, np.ndarray]:
    r = net.rnn
    return {"w_ih": _np(getattr(r, f"weight_ih_l{k}")), "w_hh": _np(getattr(r, f"weight_hh_l{k}")),
            "b_ih": _np(getattr(r, f"bias_ih_l{k}")), "b_hh": _np(getattr(r, f"bias_hh_l{k}"))}


def _reorder(a: np.ndarray, H: int, order: list[int]) -> np.ndarray:
    """Re-stack the gate blocks (size H along axis 0) of a PyTorch weight or bias."""
    return np.concatenate([a[g * H:(g + 1) * H] for g in order], axis=0)


# PyTorch gate order -> ONNX gate order: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h.
_ONNX_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2]}


def build_onnx(spec: ModelSpec, net, path: str, opset: int = 17) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    H, I, O, L = spec.hidden_size, spec.input_size, spec.output_size, spec.layers
    order = _ONNX_ORDER[spec.op]
    inits, nodes = [], []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", "B", O])]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "sq_axes"))
    x = "x"
    for k in range(L):
        w = _layer_weights(net, k)
        W = _reorder(w["w_ih"], H, order)[None]
        R = _reorder(w["w_hh"], H, order)[None]
        B = np.concatenate([_reorder(w["b_ih"], H, order), _reorder(w["b_hh"], H, order)])[None]
        for name, arr in ((f"W{k}", W), (f"R{k}", R), (f"B{k}", B)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))
        state_in = [f"h0_{k}"] + ([f"c0_{k}"] if spec.op == "LSTM" else [])
        state_out = [f"hn_{k}"] + ([f"cn_{k}"] if spec.op == "LSTM" else [])
        for s in state_in:
            inputs.append(helper.make_tensor_value_info(s, TensorProto.FLOAT, [1, "B", H]))
        for s in state_out:
            outputs.append(helper.make_tensor_value_info(s, TensorProto.FLOAT, [1, "B", H]))
        attrs = {"hidden_size": H, "direction": "forward"}
        if spec.op == "GRU":
            attrs["linear_before_reset"] = 1
        node_inputs = [x, f"W{k}", f"R{k}", f"B{k}", "", f"h0_{k}"] + (
            [f"c0_{k}"] if spec.op == "LSTM" else [])
        nodes.append(helper.make_node(spec.op, node_inputs, [f"Y{k}"] + state_out,
                                      name=f"{spec.op.lower()}{k}", **attrs))
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", "sq_axes"], [f"h{k}"], name=f"squeeze{k}"))
        x = f"h{k}"
    inits.append(numpy_helper.from_array(np.ascontiguousarray(_np(net.fc.weight).T), "fc_W"))
    inits.append(numpy_helper.from_array(_np(net.fc.bias), "fc_b"))
    nodes.append(helper.make_node("MatMul", [x, "fc_W"], ["fc_mm"], name="fc_matmul"))
    nodes.append(helper.make_node("Add", ["fc_mm", "fc_b"], ["y"], name="fc_add"))
    graph = helper.make_graph(nodes, f"bench_{spec.key}", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="lstm-infer-benchmarks")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def build_lstm_file(spec: ModelSpec, net, path: str) -> None:
    from lstm_infer.builder import GraphBuilder

    H = spec.hidden_size
    b = GraphBuilder("x", spec.input_size)
    v, size = "x", spec.input_size
    for k in range(spec.layers):
        w = _layer_weights(net, k)
        if spec.op == "LSTM":
            v = b.add("LSTM", f"lstm{k}", [v],
                      {"input_size": size, "hidden_size": H, "proj_size": 0, "reverse": False},
                      {"W_ih": w["w_ih"].T, "W_hh": w["w_hh"].T, "bias": w["b_ih"] + w["b_hh"]})
        else:
            v = b.add("GRU", f"gru{k}", [v],
                      {"input_size": size, "hidden_size": H, "linear_before_reset": True,
                       "reverse": False},
                      {"W_ih": w["w_ih"].T, "W_hh": w["w_hh"].T, "b_ih": w["b_ih"], "b_hh": w["b_hh"]})
        size = H
    v = b.add("Linear", "fc", [v], {"in_features": H, "out_features": spec.output_size},
              {"W": _np(net.fc.weight).T, "bias": _np(net.fc.bias)})
    b.output(v)
    b.save(path, converter="benchmarks.models (GraphBuilder)")


@dataclass
class Bundle:
    spec: ModelSpec
    net: object            # float32 torch module
    lstm_path: str
    onnx_path: str
    pt_path: str           # state_dict (torch.save), for the start-up and load figures


def build_bundle(spec: ModelSpec, directory: str) -> Bundle:
    import torch

    net = torch_module(spec)
    base = os.path.join(directory, spec.key)
    b = Bundle(spec, net, base + ".lstm", base + ".onnx", base + ".pt")
    build_lstm_file(spec, net, b.lstm_path)
    build_onnx(spec, net, b.onnx_path)
    torch.save(net.state_dict(), b.pt_path)
    return b
