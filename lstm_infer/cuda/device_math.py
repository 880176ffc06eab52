"""Scalar device functions: the CPU kernels' own Python source compiled for the GPU.

Each is the `py_func` of the CPU function (lstm_infer/kernels/activations.py,
ops/activation.py, ops/binary.py, ops/layernorm.py) compiled with `cuda.jit(device=True)`,
its calls to other kernels re-pointed at their device versions, so a formula (fast_tanh's
rational approximation, every activation kind, IEEE division) is written once and the
device computes what the CPU computes.
"""
from __future__ import annotations

import types

from numba import cuda

from ..kernels import activations
from ..ops import activation, binary, layernorm


def device_version(fn, **helpers):
    """`fn` (an njit dispatcher) compiled for the device, with the globals named in
    `helpers` (other kernels it calls) replaced by their device versions."""
    py = fn.py_func
    env = dict(py.__globals__)
    env.update(helpers)
    clone = types.FunctionType(py.__code__, env, py.__name__, py.__defaults__, py.__closure__)
    return cuda.jit(device=True)(clone)


fast_tanh = device_version(activations.fast_tanh)
fast_sigmoid = device_version(activations.fast_sigmoid, fast_tanh=fast_tanh)
gate_act = device_version(activations.gate_act, fast_tanh=fast_tanh, fast_sigmoid=fast_sigmoid)
clipv = device_version(activations.clipv)
exact_sigmoid = device_version(activation.sigmoid)
elementwise = device_version(activation._elementwise, sigmoid=exact_sigmoid)
softmax = device_version(activation._softmax)
binary_op = device_version(binary._binary)
layer_norm = device_version(layernorm.layernorm)
