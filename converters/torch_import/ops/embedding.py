"""Embedding lookups: nn.Embedding / F.embedding (aten.embedding) of a constant table at
the model's integer token-id input -> the runtime's `Embedding` op (lstm_infer/ops/
embedding.py), emitted as the ONNX importer emits it (`layout.embedding_node`).

The ids reach the engine as one float per step (the file's input size is 1) and are
checked against the vocabulary before every step, so a lookup is only converted where it
reads the input itself (transposed, unsqueezed or cast between integer dtypes at most:
those keep the input's value id "%in"); ids computed from the input are refused.
`padding_idx`, `scale_grad_by_freq` and `sparse` only matter in training (the padding
row is in the table as it is); `max_norm` renormalises the looked-up rows of the table in
place on every forward call, which has no per-step counterpart and is refused.
"""
from __future__ import annotations

from ...layout import embedding_node
from ..context import Context
from ..fx import is_tensor, module_of, packet_name, to_numpy, torch_module
from ..values import TorchValue
from .registry import op


def is_token_ids(ctx: Context, v) -> bool:
    """v is the integer token-id input (rearranged, not computed)."""
    return ctx.int_input and isinstance(v, TorchValue) and v.vid == ctx.input_val.vid


def _refuse_max_norm(ctx: Context) -> None:
    """nn.Embedding(max_norm=...) exports an embedding_renorm_ that nothing reads (it
    rewrites the table in place), so the walk would skip it: look for it here."""
    for n in ctx.cur.graph.nodes:
        if n.op == "call_function" and packet_name(n.target).rstrip("_") == "embedding_renorm":
            path, _ = module_of(n)
            ctx.fail(f"nn.Embedding with max_norm (module {path or '<root>'!r}) renormalises the "
                     "table rows it looks up, in place, on every call; lstm-infer looks up a "
                     "fixed table: renormalise the weight once and build the Embedding without "
                     "max_norm")


@op("embedding")
def _embedding(ctx: Context, tgt, a):
    table, ids = a["weight"], a["indices"]
    _refuse_max_norm(ctx)
    if not is_tensor(table):
        ctx.fail("embedding of a table computed from the input (only a constant table)")
    if not is_token_ids(ctx, ids):
        ctx.fail("embedding at indices computed from the model input; lstm-infer looks up the "
                 "model's integer token-id input itself (transposed or cast at most), where "
                 "it checks the ids against the vocabulary" if isinstance(ids, TorchValue) else
                 "embedding at indices that are not the model's integer token-id input")
    if table.dim() != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        ctx.fail(f"embedding table of shape {tuple(table.shape)}")
    attrs, weights = embedding_node(to_numpy(table), ids.size)
    D = attrs["embedding_dim"]
    vid = ctx.emit("Embedding", ctx.node_name(), [ids.vid], attrs, weights, D)
    return ctx.derive(ids, vid, size=D, dims=ids.dims + ("F",))


def int_cast(ctx: Context, v, dtype) -> TorchValue:
    """`.long()` / `.to(torch.int32)` of a per-step value: bookkeeping on the token ids,
    an error on anything else (the engine computes in float32)."""
    torch = torch_module()
    if is_token_ids(ctx, v):
        return v
    if isinstance(v, TorchValue) and v.vid == ctx.input_val.vid and dtype in (torch.int64, torch.int32):
        ctx.fail(f"conversion of the float model input to {dtype}: for token ids into "
                 "nn.Embedding, pass example_input as integer ids (torch.long, shape (B, T))")
    ctx.fail(f"conversion of a per-step value to {dtype} (only float32 runs; integer token "
             "ids are the model input itself)")
