"""torch.onnx.export(dynamo=True) in a fresh interpreter, for tests that need the time axis
left free: in a pytest session where other tests exported models with the dynamo exporter,
later exports of an LSTM model came out with the example's length baked into their
Reshapes (seen with torch 2.13; torch._dynamo.reset() did not help)."""
from __future__ import annotations

import os
import subprocess
import sys

_CODE = """
import importlib, sys, warnings
import torch
torch.set_num_threads(1)
module, cls, arg, path, B, T, F, opset = sys.argv[1:]
torch.manual_seed(0)
net = getattr(importlib.import_module(module), cls)(*([arg] if arg else [])).eval()
Dim = torch.export.Dim
kw = {"opset_version": int(opset)} if int(opset) else {}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.onnx.export(net, (torch.randn(int(B), int(T), int(F)),), path, input_names=["x"],
                      output_names=["y"], dynamo=True, verbose=False,
                      dynamic_shapes=({0: Dim("batch"), 1: Dim("seq", min=2)},), **kw)
"""


def export_dynamo(module: str, cls: str, path, shape: tuple, arg: str = "", opset: int = 0) -> None:
    """Export `module.cls(arg)` (seeded 0) for an input of `shape` (B, T, F) to `path`."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [here, os.path.dirname(here), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _CODE, module, cls, arg, str(path),
                        *map(str, shape), str(opset)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
