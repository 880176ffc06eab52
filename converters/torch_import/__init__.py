"""PyTorch importer: an `nn.Module` (via `torch.export`), a `.pt2` file or a state_dict
file into the `.lstm` format.

How it works
------------
The module is exported with `torch.export.export(module.eval(), (example_input,))`. The
exported graph keeps recurrent layers as single ops (`aten.lstm.input`, `aten.gru.input`,
`aten.rnn_tanh.input`, `aten.rnn_relu.input`) and cell calls (`aten.lstm_cell`, ...) as
one op per call. `walk.Walker` interprets that graph abstractly: every FX value becomes

* a torch tensor: parameters, buffers and everything computed from them only (folded
  with torch itself, e.g. `torch.zeros(...)` initial states);
* a `TorchValue`: a per-step value of the emitted graph, with the role of each torch
  dimension ('T' time, 'B' batch, 'F' features, or a symbol still to be resolved) and
  either the whole sequence (`t is None`) or the value at one time step `t`;
* a `StateStack` (`h_n` / `c_n` of a recurrent op) or `CellC` (an LSTM cell's `c`).

Per-step ops are hash-consed (key: op, attributes, weight contents, input values), so a
Python loop over an `nn.LSTMCell` that export unrolled into T calls folds back into one
recurrent node: every call after the first must receive exactly the state the same cell
returned at the previous step, and `torch.stack` over all T steps of one value becomes a
per-step value again.

Last-step models
----------------
lstm-infer emits one output row per time step: the row for step t is what the model
returns when the sequence ends at step t. A model whose forward returns only the last
step (`fc(out[:, -1])`, `fc(h_n[-1])`, the last `h` of a cell loop) therefore converts to
a per-step output: `run(X)` returns (T, O) whose last row equals the torch output, and a
stream yields the model's answer after every step. (For a bidirectional layer only the
last row has that meaning; the conversion report says so.)

Limits (each raises `converters.ConversionError` naming the op and module)
-----------------------------------------------------------------------------
One input sequence; initial states must be zeros or constants (not model inputs);
reductions over time other than taking the last step, batch indexing, convolutions,
attention and anything outside `SUPPORTED` are rejected.

Modules
-------
`api` (entry points, export), `emit` (walk + prune, then the IR via GraphBuilder), `walk`
(the walk over the FX graph and dispatch), `context` (state shared by op converters:
axis roles, IR nodes, building blocks), `values` (what an FX value can be), `fx` (reading
FX nodes), `ops/` (one converter per aten op, by family, in a registry). Weight layouts
(transposes, gate orders, bias folding) are `converters.layout`'s.
"""
from __future__ import annotations

from .api import convert_torch, convert_torch_file, verify_torch_file
from .ops import SUPPORTED

__all__ = ["convert_torch", "convert_torch_file", "verify_torch_file", "SUPPORTED"]
