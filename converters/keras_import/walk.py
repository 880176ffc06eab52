"""From a Keras file to the IR: walk the layer calls in dependency order, hand each to
its converter (`layers/`), and record what verification needs (`KerasSpec`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from ..errors import ConversionError, UnsupportedOpError
from .context import Context, Layer
from .layers import LAYERS, SUPPORTED
from .reader import KerasFile
from .topology import parse_model
from .values import KValue, Refused

__all__ = ["KerasSpec", "OutputInfo", "build_graph"]

_NESTED = ("Sequential", "Functional", "Model")


@dataclass
class OutputInfo:
    """One model output: its IR value, whether Keras returns it per step (`time`) or
    once per sequence, and whether its earlier rows are results for prefixes."""
    index: int
    label: str
    name: str          # IR value
    shape: tuple       # per-step shape
    time: bool
    prefix_ok: bool


@dataclass
class KerasSpec:
    """What verification needs to feed Keras and compare."""
    input_shape: tuple             # per-step shape of the model input
    input_size: int
    fixed_T: int | None            # time length fixed by the model's input, if any
    fixed_B: int | None            # batch size fixed by the model's input (stateful models)
    ids: bool                      # the input is token ids
    vocab: int = 0                 # smallest Embedding vocabulary reading the ids
    ids_low: int = 0               # smallest id to feed (1 with mask_zero)
    outputs: list = field(default_factory=list)


def _dtype_policy(layer: dict) -> str:
    d = layer.get("config", {}).get("dtype")
    if isinstance(d, dict):
        d = d.get("config", {}).get("name", "float32")
    return str(d or "float32")


def _input_spec(topo) -> tuple[KerasSpec, str]:
    if len(topo.inputs) != 1:
        raise ConversionError(f"the model has {len(topo.inputs)} inputs; the Keras importer "
                              "supports models with one input")
    inp = topo.inputs[0]
    shape = tuple(inp.batch_shape)
    if len(shape) < 2:
        raise ConversionError(f"model input {inp.name!r} of shape {shape} has no time axis; "
                              "expected (batch, time, features...) or (batch, time) token ids")
    per_step = tuple(int(d) for d in shape[2:])
    if any(d is None for d in shape[2:]):
        raise ConversionError(f"model input {inp.name!r} of shape {shape}: the per-step "
                              "feature sizes must be fixed")
    consumers = [c for c in topo.calls if inp.key in c.inputs]
    embeds = [c for c in consumers if c.class_name == "Embedding"]
    ids = bool(embeds) or inp.dtype.startswith(("int", "uint"))
    spec = KerasSpec(per_step, int(prod(per_step)) if per_step else 1,
                     shape[1], shape[0], ids)
    if embeds:
        spec.vocab = min(int(c.layer["config"]["input_dim"]) for c in embeds)
        spec.ids_low = 1 if any(c.layer["config"].get("mask_zero") for c in embeds) else 0
    name = "tokens" if ids else "x"
    return spec, name


def build_graph(kf: KerasFile, builder_cls, options: dict):
    """Convert every layer call into IR nodes; returns (GraphBuilder, KerasSpec, warnings)."""
    topo = parse_model(kf.config)
    spec, in_name = _input_spec(topo)
    b = builder_cls(in_name, spec.input_size,
                    shape=spec.input_shape if len(spec.input_shape) > 1 else None)
    ctx = Context(kf, b, options, fixed_T=spec.fixed_T)
    env: dict = {topo.inputs[0].key: KValue(in_name, spec.input_shape, ids=spec.ids)}
    for call in topo.calls:
        L = Layer(call.name, call.class_name, call.layer.get("config", {}),
                  kf.layer_weights(call.name), call.kwargs, call.options,
                  {n: [env.get(k) for k in keys] for n, keys in call.kw_inputs.items()})
        ctx.layer = L
        fn = LAYERS.get(call.class_name)
        if fn is None:
            if call.class_name in _NESTED:
                ctx.layer = L
                raise UnsupportedOpError(f"{ctx.where()}: a model nested inside the model is "
                                         "not supported; build the model from its layers "
                                         "directly")
            raise UnsupportedOpError(f"{ctx.where()}: Keras layer class {call.class_name!r} is "
                                     f"not supported. Supported layers: {SUPPORTED}")
        policy = _dtype_policy(call.layer)
        if policy != "float32":
            ctx.fail(f"dtype policy {policy!r}: only float32 models are supported (lstm-infer "
                     "computes in float32)")
        ins = []
        for k in call.inputs:
            v = env.get(k)
            if v is None:
                ctx.fail(f"input tensor {k} is not produced by any converted layer")
            if isinstance(v, Refused):
                ctx.fail(f"reads an output that cannot be converted: {v.reason}")
            ins.append(v)
        try:
            out = fn(ctx, L, ins, False)
        except ConversionError:
            raise
        except Exception as e:  # a converter bug or an IR node the builder rejected
            raise ConversionError(f"{ctx.where()}: could not be converted: {type(e).__name__}: "
                                  f"{e}") from e
        for k, v in enumerate(out if isinstance(out, list) else [out]):
            env[call.output(k)] = v
    ctx.layer = None
    used = set()
    names = [k[0] for k in topo.outputs]
    for j, key in enumerate(topo.outputs):
        label = key[0] if names.count(key[0]) == 1 else f"{key[0]}_{key[1]}_{key[2]}"

        v = env.get(key)
        if v is None or isinstance(v, Refused):
            raise ConversionError(f"model output {j} ({key[0]}): "
                                  f"{v.reason if v else 'not produced by a converted layer'}")
        vid = v.vid
        if vid == in_name or vid in used:  # outputs must be distinct node outputs
            vid = b.add("Activation", f"output{j}", [vid], {"kind": "identity", "size": v.size})
        used.add(vid)
        b.output(vid, label, shape=v.shape if len(v.shape) > 1 else None)
        spec.outputs.append(OutputInfo(j, label, vid, v.shape, v.time, v.prefix_ok))
    return b, spec, ctx.warnings
