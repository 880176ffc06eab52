"""Architecture inference from a state_dict of standard modules.

A state_dict holds weights only, so the architecture is read off key names and shapes,
in state_dict order, one group of keys per module prefix:

* `<p>.weight_ih_l{k}[_reverse]`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`,
  `weight_hr_l{k}`: nn.LSTM (gate multiple 4; proj_size when weight_hr is present), nn.GRU
  (3) or nn.RNN (1; tanh unless option `rnn_nonlinearity="relu"`). Layers, directions and
  bias come from the keys present; batch_first does not matter for the per-step graph.
* `<p>.weight_ih`, `weight_hh`, `bias_ih`, `bias_hh` (no layer suffix): an nn.LSTMCell /
  GRUCell / RNNCell, imported as the equivalent one-layer nn.LSTM/GRU/RNN (same math).
* `<p>.weight` 2-D (+ `<p>.bias`): nn.Linear.
* `<p>.weight` 1-D (+ `<p>.bias`): nn.LayerNorm over the last dim (eps from option
  `layernorm_eps`, default 1e-5).
* the first module a lone `<p>.weight` (V, D) and the next layer taking D features (not V,
  as it would after a Linear without bias): nn.Embedding, the model then takes token ids.

A state_dict carries no activation functions (or any forward() logic) between layers,
so only plain stacks of recurrent layers + Linear/LayerNorm are inferred: each layer
feeds the next, a recurrent layer passes on its output sequence. Models with
activations between layers need the module itself (`convert_torch`) or a `.pt2` file.
Any other key (BatchNorm statistics, ...) raises ConversionError naming it.
"""
from __future__ import annotations

import re

from .errors import ConversionError

_RNN_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
_CELL_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)$")

NOTE = ("a state_dict carries no activation functions between layers: inferred a plain stack "
        "of {layers}; if the model applies activations or other logic in forward(), convert the "
        "module itself or a .pt2 file from torch.export instead")


def load_state_dict(src) -> dict:
    """torch.load with weights_only=True; accepts a dict with a "state_dict" key too."""
    import torch
    try:
        obj = torch.load(str(src), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConversionError(
            f"could not load {src} as a state_dict with torch.load(weights_only=True): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Pickled modules are "
            "not loaded (they can run code); save model.state_dict(), or use torch.export.save "
            "to write a .pt2 file") from e
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{src} does not hold a state_dict (a dict of tensors), got "
                              f"{type(obj).__name__}")
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ConversionError(f"state_dict entry {k!r} is {type(v).__name__}, not a tensor")
    return obj


def _groups(sd: dict) -> list[tuple[str, dict]]:
    groups: list[tuple[str, dict]] = []
    for key, t in sd.items():
        prefix, _, leaf = key.rpartition(".")
        if groups and groups[-1][0] == prefix:
            groups[-1][1][leaf] = t
        else:
            if any(p == prefix for p, _ in groups):
                raise ConversionError(f"state_dict key {key!r}: module {prefix!r} appears in two "
                                      "separate places; keys must be in module order")
            groups.append((prefix, {leaf: t}))
    return groups


def _recurrent(prefix: str, keys: dict, nonlinearity: str):
    import torch.nn as nn
    full = {}
    cell = all(_CELL_KEY.match(k) for k in keys)
    for k, t in keys.items():
        if cell:
            full[k + "_l0"] = t
        elif _RNN_KEY.match(k):
            full[k] = t
        else:
            raise ConversionError(f"state_dict key {_key(prefix, k)!r} is not a recurrent weight "
                                  "(expected weight_ih_l<k>, weight_hh_l<k>, bias_*, weight_hr_l<k>)")
    where = f"state_dict module {prefix!r}"
    for need in ("weight_ih_l0", "weight_hh_l0"):
        if need not in full:
            raise ConversionError(f"{where}: missing {need}")
    w_ih, w_hh = full["weight_ih_l0"], full["weight_hh_l0"]
    if w_ih.dim() != 2 or w_hh.dim() != 2:
        raise ConversionError(f"{where}: weight_ih/weight_hh must be 2-D")
    proj = "weight_hr_l0" in full
    if proj:
        P, H = (int(s) for s in full["weight_hr_l0"].shape)
    else:
        H, P = int(w_hh.shape[1]), 0
    if H <= 0 or w_ih.shape[0] % H or w_ih.shape[0] != w_hh.shape[0]:
        raise ConversionError(f"{where}: weight_ih {tuple(w_ih.shape)} and weight_hh "
                              f"{tuple(w_hh.shape)} do not fit one hidden size")
    gates = int(w_ih.shape[0]) // H
    kinds = {4: "LSTM", 3: "GRU", 1: "RNN"}
    if gates not in kinds:
        raise ConversionError(f"{where}: {gates} gate blocks of size {H}; expected 4 (LSTM), "
                              "3 (GRU) or 1 (RNN)")
    kind = kinds[gates]
    if proj and kind != "LSTM":
        raise ConversionError(f"{where}: weight_hr is only valid for LSTM")
    layers = 1 + max(int(_RNN_KEY.match(k).group(2)) for k in full)
    bidir = any(k.endswith("_reverse") for k in full)
    bias = "bias_ih_l0" in full
    I = int(w_ih.shape[1])
    kw = dict(num_layers=layers, bias=bias, batch_first=True, bidirectional=bidir)
    if kind == "LSTM":
        mod = nn.LSTM(I, H, proj_size=P, **kw)
    elif kind == "GRU":
        mod = nn.GRU(I, H, **kw)
    else:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"rnn_nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        mod = nn.RNN(I, H, nonlinearity=nonlinearity, **kw)
    try:
        mod.load_state_dict(full, strict=True)
    except Exception as e:
        raise ConversionError(f"{where}: the keys do not form a {kind} with {layers} layer(s): "
                              f"{str(e).splitlines()[0]}") from e
    out = (2 if bidir else 1) * (P or H)
    desc = (f"{kind}{'Cell' if cell else ''}({I}, {H}" + (f", num_layers={layers}" if layers > 1 else "")
            + (", bidirectional" if bidir else "") + (f", proj_size={P}" if P else "")
            + (", bias=False" if not bias else "") + ")")
    return mod, I, out, desc


def _key(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


def _plain(prefix: str, keys: dict, eps: float):
    import torch.nn as nn
    for k in keys:
        if k not in ("weight", "bias"):
            raise ConversionError(f"unrecognised state_dict key {_key(prefix, k)!r}: only recurrent "
                                  "layers (LSTM/GRU/RNN and their cells), Linear and LayerNorm "
                                  "can be inferred from a state_dict")
    w, b = keys.get("weight"), keys.get("bias")
    if w is None:
        raise ConversionError(f"state_dict module {prefix!r} has a bias but no weight")
    if w.dim() == 2:
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise ConversionError(f"state_dict key {_key(prefix, 'bias')!r} has shape {tuple(b.shape)} "
                                  f"for a Linear of {w.shape[0]} outputs")
        mod = nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=b is not None)
        mod.load_state_dict(keys)
        return mod, int(w.shape[1]), int(w.shape[0]), f"Linear({w.shape[1]}, {w.shape[0]})"
    if w.dim() == 1:
        if b is not None and b.shape != w.shape:
            raise ConversionError(f"state_dict key {_key(prefix, 'bias')!r} has shape {tuple(b.shape)} "
                                  f"for a LayerNorm of {w.shape[0]} features")
        mod = nn.LayerNorm(int(w.shape[0]), eps=eps, bias=b is not None)
        mod.load_state_dict(keys)
        return mod, int(w.shape[0]), int(w.shape[0]), f"LayerNorm({w.shape[0]})"
    raise ConversionError(f"state_dict key {_key(prefix, 'weight')!r} has shape {tuple(w.shape)}: "
                          "not a Linear (2-D) or LayerNorm (1-D) weight")


def module_from_state_dict(sd: dict, rnn_nonlinearity: str = "tanh", layernorm_eps: float = 1e-5,
                           **_ignored):
    """-> (nn.Module taking (B, T, I), example input, notes). See the module docstring."""
    import torch
    import torch.nn as nn

    class StateDictStack(nn.Module):
        """Layers in state_dict order; a recurrent layer passes on its output sequence."""

        def __init__(self):
            super().__init__()
            self.order: list[str] = []

        def forward(self, x):
            for name in self.order:
                layer = getattr(self, name)
                x = layer(x)[0] if isinstance(layer, nn.RNNBase) else layer(x)
            return x

    def layer(prefix, keys):
        if any(_RNN_KEY.match(k) for k in keys) or (
                keys and all(_CELL_KEY.match(k) for k in keys)):
            return _recurrent(prefix, keys, rnn_nonlinearity)
        return _plain(prefix, keys, float(layernorm_eps))

    model = StateDictStack()
    descs = []
    in_size = prev = None
    groups = _groups(sd)
    vocab = _embedding_vocab(groups, layer)
    for prefix, keys in groups:
        if vocab is not None and prev is None:
            mod = nn.Embedding(vocab, int(keys["weight"].shape[1]))
            mod.load_state_dict(keys)
            i, o, desc = 1, mod.embedding_dim, f"Embedding({vocab}, {mod.embedding_dim})"
        else:
            mod, i, o, desc = layer(prefix, keys)
        if prev is not None and i != prev:
            first = _key(prefix, next(iter(keys)))
            raise ConversionError(f"state_dict key {first!r}: layer {prefix!r} takes {i} features but "
                                  f"the layer before it gives {prev}")
        if in_size is None:
            in_size = i
        prev = o
        name = (prefix or "layer").replace(".", "_")
        while hasattr(model, name):
            name += "_"
        model.add_module(name, mod)
        model.order.append(name)
        descs.append(desc)
    model.eval()
    note = NOTE.format(layers=" -> ".join(descs))
    example = torch.randint(0, vocab, (2, 5)) if vocab is not None else torch.randn(2, 5, in_size)
    return model, example, [note]


def _embedding_vocab(groups: list, layer) -> int | None:
    """V when the first module is an nn.Embedding: a lone 2-D `weight` (V, D) whose D, not
    V, is what the next layer takes (a Linear without bias would give it V); None else."""
    if len(groups) < 2 or set(groups[0][1]) != {"weight"}:
        return None
    w = groups[0][1]["weight"]
    if w.dim() != 2 or w.shape[0] == w.shape[1]:
        return None
    return int(w.shape[0]) if layer(*groups[1])[1] == w.shape[1] else None


def module_from_state_dict_file(src, **options):
    return module_from_state_dict(load_state_dict(src), **options)
