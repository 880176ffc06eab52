"""Keras activations: as IR Activation nodes (`emit_activation`) and as the gate
activations of recurrent cells (`gate_activation`); and the activation layers.

Keras's hard_sigmoid differs between versions and from ONNX's default: Keras 3 computes
relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1) (keras/src/backend/*/nn.py, torch's
hardsigmoid), Keras 2 clip(0.2 x + 0.5, 0, 1). Both are the IR's `hard_sigmoid`
min(max(alpha*x + beta, 0), 1) with the version's alpha, beta = 0.5, so no new kind.
"""
from __future__ import annotations

from ..context import Context, Layer
from ..values import KValue
from .registry import layer

# Keras activations that are one IR Activation kind each (name -> (kind, alpha, beta)).
_SIMPLE = {"relu": ("relu", None, None), "tanh": ("tanh", None, None),
           "sigmoid": ("sigmoid", None, None), "softplus": ("softplus", None, None),
           "softsign": ("softsign", None, None), "exponential": ("exp", None, None),
           "elu": ("elu", 1.0, None), "relu6": ("clip", 0.0, 6.0),
           "leaky_relu": ("leaky_relu", 0.2, None), "gelu": ("gelu", None, None)}
_COMPOSED = ("linear", "selu", "silu", "swish", "hard_sigmoid", "hard_silu", "hard_swish",
             "softmax", "log_softmax")
SUPPORTED_ACTIVATIONS = tuple(sorted(set(_SIMPLE) | set(_COMPOSED)))
# Gate activations a recurrent cell can apply (IR kinds, kernels/activations.GATE_ACT_CODES).
_GATE = {"sigmoid": ("sigmoid", 0.0, 0.0), "tanh": ("tanh", 0.0, 0.0), "relu": ("relu", 0.0, 0.0),
         "linear": ("affine", 1.0, 0.0), "elu": ("elu", 1.0, 0.0),
         "softsign": ("softsign", 0.0, 0.0), "softplus": ("softplus", 0.0, 0.0),
         "leaky_relu": ("leaky_relu", 0.2, 0.0)}
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def activation_name(spec) -> str:
    """A config's `activation` (a name, None, or a serialized function) -> its name."""
    if spec is None:
        return "linear"
    if isinstance(spec, dict):  # {"class_name": "function", "config": "relu", ...}
        inner = spec.get("config")
        spec = inner if isinstance(inner, str) else spec.get("class_name")
    return str(spec)


def hard_sigmoid_params(ctx: Context) -> tuple[float, float]:
    """(alpha, beta) of hard_sigmoid for the file's Keras version (module docstring)."""
    return (0.2, 0.5) if ctx.keras_major < 3 else (1.0 / 6.0, 0.5)


def emit_activation(ctx: Context, v: KValue, spec, suffix: str = ".act") -> KValue:
    """The Keras activation `spec` applied to v (no node for 'linear')."""
    name = activation_name(spec)
    if name == "linear":
        return v
    if name in _SIMPLE:
        kind, a, b = _SIMPLE[name]
        return ctx.act(v, kind, a, b, suffix=suffix)
    if name == "selu":
        e = ctx.act(v, "elu", SELU_ALPHA, suffix=suffix + ".elu")
        return ctx.act(e, "affine", SELU_SCALE, 0.0, suffix=suffix)
    if name in ("silu", "swish"):
        s = ctx.act(v, "sigmoid", suffix=suffix + ".sigmoid")
        return ctx.binary("mul", v, s, suffix=suffix)
    if name in ("hard_sigmoid", "hard_silu", "hard_swish"):
        a, b = hard_sigmoid_params(ctx)
        if name == "hard_sigmoid":
            return ctx.act(v, "hard_sigmoid", a, b, suffix=suffix)
        s = ctx.act(v, "hard_sigmoid", 1.0 / 6.0, 0.5, suffix=suffix + ".hard_sigmoid")
        return ctx.binary("mul", v, s, suffix=suffix)
    if name in ("softmax", "log_softmax"):  # over the last axis
        return ctx.act(v, name, axis_size=v.shape[-1] if v.shape else 1, suffix=suffix)
    ctx.fail(f"activation {name!r} is not supported; supported: {', '.join(SUPPORTED_ACTIVATIONS)}")


def gate_activation(ctx: Context, spec, what: str) -> dict:
    """A recurrent cell's `activation`/`recurrent_activation` -> an IR gate activation."""
    name = activation_name(spec)
    if name == "hard_sigmoid":
        a, b = hard_sigmoid_params(ctx)
        return {"kind": "hard_sigmoid", "alpha": a, "beta": b}
    if name not in _GATE:
        ctx.fail(f"{what}={name!r} is not supported inside a recurrent cell; supported: "
                 f"{', '.join(sorted(set(_GATE) | {'hard_sigmoid'}))}")
    kind, a, b = _GATE[name]
    return {"kind": kind, "alpha": a, "beta": b}


@layer("Activation")
def _activation(ctx: Context, L: Layer, ins: list, per_frame: bool):
    return emit_activation(ctx, ins[0], L.get("activation"), suffix="")


@layer("ReLU")
def _relu(ctx: Context, L: Layer, ins: list, per_frame: bool):
    v = ins[0]
    slope = float(L.get("negative_slope") or 0.0)
    thr = float(L.get("threshold") or 0.0)
    mx = L.get("max_value")
    if thr != 0.0:
        ctx.fail("ReLU with threshold != 0 is not supported")
    if slope and mx is not None:
        ctx.fail("ReLU with both negative_slope and max_value is not supported")
    if slope:
        return ctx.act(v, "leaky_relu", slope)
    if mx is not None:
        return ctx.act(v, "clip", 0.0, float(mx))
    return ctx.act(v, "relu")


@layer("LeakyReLU")
def _leaky_relu(ctx: Context, L: Layer, ins: list, per_frame: bool):
    slope = L.get("negative_slope", L.get("alpha"))  # Keras 2 called it alpha (default 0.3)
    return ctx.act(ins[0], "leaky_relu", 0.3 if slope is None else float(slope))


@layer("ELU")
def _elu(ctx: Context, L: Layer, ins: list, per_frame: bool):
    return ctx.act(ins[0], "elu", float(L.get("alpha", 1.0)))


@layer("Softmax")
def _softmax(ctx: Context, L: Layer, ins: list, per_frame: bool):
    v = ins[0]
    axis = L.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis != -1 and axis != len(v.shape) + (1 if v.time and not per_frame else 0):
        ctx.fail(f"softmax over axis {axis}: only the last axis is supported")
    return ctx.act(v, "softmax", axis_size=v.shape[-1] if v.shape else 1)
