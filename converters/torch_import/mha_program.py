"""nn.MultiheadAttention inside a saved `torch.export` program (.pt2), where no module
object is left to hook (mha_hook.py covers modules in memory).

torch.export traces the module into its implementation (in_proj linear, unflatten, head
views, scaled_dot_product_attention or baddbmm/softmax/bmm, out_proj), which differs
between torch versions, fast paths and need_weights. So instead of matching those ops,
the FX nodes of one call (one `nn_module_stack` entry of class MultiheadAttention; a
module called twice has two) are folded: the call's inputs are the values it reads from
outside (per-step values and constants such as the mask), its output the one node read
outside it, its weights the program's state dict under the module's path. Which
per-step input is query/key/value, the head count, batch_first and the mask (a constant
input, none, or is_causal) are settled by running the call's own nodes on random inputs
and comparing with nn.MultiheadAttention built from those weights (the first match);
the match is then emitted by ops/attention.emit_mha, the hook's emission code, which
reads the mask as causal, banded or looking ahead (run() only).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .context import Context, reject
from .fx import fx_shape, is_tensor, packet_name, torch_module
from .ops.attention import emit_mha
from .values import CellC, StateStack, TorchValue

MHA_CLASS = "torch.nn.modules.activation.MultiheadAttention"
_SUPPORTED = ("supported: self-attention (or a last-step query) on per-step values with a "
              "constant causal or banded attn_mask, is_causal=True, or no mask (run() only); "
              "without key_padding_mask, add_bias_kv or add_zero_attn")
# The call's nodes and the reference run the same torch kernels (~1e-7 apart; the
# need_weights path's bmm/softmax vs scaled_dot_product_attention ~1e-6), relative to the
# output's scale; a wrong head count, layout or mask is off by O(1).
_ATOL = 1e-5


@dataclass
class MhaCall:
    """The FX nodes of one nn.MultiheadAttention call (graph order) and its output node."""
    key: str
    path: str
    nodes: list = field(default_factory=list)
    out: object = None


def _mha_entry(node) -> tuple[str, str] | None:
    """(stack key, path) of the outermost nn.MultiheadAttention that produced `node`."""
    for key, (path, cls) in (node.meta.get("nn_module_stack") or {}).items():
        name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
        if name == MHA_CLASS:
            return key, path
    return None


def mha_calls(graph, needed: set) -> dict:
    """FX node -> its MhaCall, for every traced nn.MultiheadAttention call whose output is
    needed. A call whose attention weights are read outside it is refused."""
    calls: dict[str, MhaCall] = {}
    for n in graph.nodes:
        e = _mha_entry(n) if n.op == "call_function" else None
        if e is not None:
            calls.setdefault(e[0], MhaCall(*e)).nodes.append(n)
    found = {}
    for c in calls.values():
        if any(packet_name(n.target) == "multihead_attention" for n in c.nodes):
            continue   # the hook's op (convert_torch of a module): converted by ops/attention
        members = set(c.nodes)
        outs = [n for n in c.nodes if n in needed
                and any(u not in members and (u in needed or u.op == "output") for u in n.users)]
        if not outs:
            continue
        if len(outs) > 1:
            reject(f"nn.MultiheadAttention {c.path!r}: {len(outs)} of its values are used outside "
                   f"it ({', '.join(n.name for n in outs)}); only the attention output is "
                   "supported, not the attention weights (call it with need_weights=False or "
                   "ignore them)")
        c.out = outs[0]
        found.update((n, c) for n in c.nodes)
    return found


def _inside(call: MhaCall) -> list:
    """The call's nodes its output depends on, in graph order."""
    members, seen, stack = set(call.nodes), set(), [call.out]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(i for i in n.all_input_nodes if i in members)
    return [n for n in call.nodes if n in seen]


def _state(ctx: Context, path: str) -> dict:
    prefix = f"{path}." if path else ""
    return {k[len(prefix):]: v.detach() for k, v in ctx.ep.state_dict.items()
            if k.startswith(prefix) and "." not in k[len(prefix):].replace("out_proj.", "", 1)}


def _module(sd: dict, heads: int, batch_first: bool):
    """nn.MultiheadAttention with the call's weights, or None when they do not fit `heads`."""
    nn = torch_module().nn
    E = sd["out_proj.weight"].shape[0]
    split = "in_proj_weight" not in sd
    try:
        # On the meta device: no random init (the caller's RNG stays as it was), then the
        # program's own tensors are assigned.
        m = nn.MultiheadAttention(E, heads, bias="in_proj_bias" in sd,
                                  add_bias_kv="bias_k" in sd,
                                  kdim=sd["k_proj_weight"].shape[1] if split else None,
                                  vdim=sd["v_proj_weight"].shape[1] if split else None,
                                  batch_first=batch_first, device="meta")
        m.load_state_dict(sd, assign=True)
    except (AssertionError, KeyError, RuntimeError):
        return None
    return m.eval()


def _run_nodes(nodes: list, values: dict):
    """Evaluate FX nodes with torch, inputs from `values` (which it extends)."""
    torch = torch_module()
    for n in nodes:
        args = torch.fx.node.map_arg(n.args, values.__getitem__)
        kwargs = torch.fx.node.map_arg(n.kwargs, values.__getitem__)
        values[n] = n.target(*args, **kwargs)
    return values[nodes[-1]]


def _match(ctx: Context, call: MhaCall, inside: list, steps: list, consts: list, sd: dict):
    """(module, q/k/v nodes, mask, is_causal) of the first candidate that computes what the
    call's nodes compute on random inputs, None if none does."""
    torch = torch_module()
    g = torch.Generator().manual_seed(0)
    values = {}
    for n in {i for x in inside for i in x.all_input_nodes} - set(inside):
        v = ctx.env[n]
        values[n] = (torch.randn(fx_shape(n), generator=g) if n in steps
                     else v.clone() if is_tensor(v) else v)
    with torch.no_grad():
        try:
            want = _run_nodes(inside, dict(values))
        except Exception as e:   # an op that only runs inside export (a higher-order op)
            ctx.fail(f"could not run the exported ops of nn.MultiheadAttention {call.path!r} "
                     f"({type(e).__name__}: {e})")
        if not is_tensor(want):
            return None
        atol = _ATOL * max(1.0, float(want.abs().max()))
        E = sd["out_proj.weight"].shape[0]
        ndim = len(fx_shape(steps[0]))
        masks = [(ctx.env[c], False) for c in consts] + [(None, False), (None, True)]
        for qkv in itertools.product(steps, repeat=3):
            if set(qkv) != set(steps):
                continue
            q, k, v = (values[n] for n in qkv)
            for bf, heads, (mask, causal) in itertools.product(
                    (True, False) if ndim == 3 else (False,),
                    [h for h in range(1, E + 1) if E % h == 0], masks):
                m = _module(sd, heads, bf)
                if m is None:
                    continue
                td = 1 if bf and ndim == 3 else 0
                try:
                    if causal:   # is_causal=True: nn.MultiheadAttention wants the mask too
                        mask = torch.ones(q.shape[td], k.shape[td], dtype=torch.bool).triu(1)
                    got = m(q, k, v, attn_mask=mask, need_weights=False, is_causal=causal)[0]
                except (RuntimeError, AssertionError, ValueError):
                    continue
                if got.shape == want.shape and torch.allclose(got, want, rtol=0, atol=atol):
                    return m, qkv, mask, causal
    return None


def convert_call(ctx: Context, call: MhaCall) -> TorchValue:
    """The IR of one nn.MultiheadAttention call of a saved program (see the module docstring)."""
    ctx.cur = call.out
    inside = _inside(call)
    outside = list(dict.fromkeys(i for n in inside for i in n.all_input_nodes
                                 if i not in set(inside)))
    own = {name for name, target in ctx.ep.graph_signature.inputs_to_parameters.items()
           if target.startswith(f"{call.path}." if call.path else "")}
    steps = [n for n in outside if isinstance(ctx.env[n], TorchValue)]
    for n in outside:
        if isinstance(ctx.env[n], (StateStack, CellC)):
            ctx.val(ctx.env[n], f"nn.MultiheadAttention {call.path!r}")   # says what it is
    if not steps or len(steps) > 3:
        ctx.fail(f"nn.MultiheadAttention {call.path!r} on {len(steps)} per-step inputs "
                 "(expected query, key and value computed from the input sequence)")
    consts = [n for n in outside if n not in steps and n.name not in own and is_tensor(ctx.env[n])]
    sd = _state(ctx, call.path)
    if "out_proj.weight" not in sd:
        ctx.fail(f"nn.MultiheadAttention {call.path!r}: the program's state dict has no "
                 f"{call.path}.out_proj.weight")
    if "bias_k" in sd:
        ctx.fail(f"nn.MultiheadAttention {call.path!r} with add_bias_kv (extra key slots that "
                 "are not time steps)")
    found = _match(ctx, call, inside, steps, consts, sd)
    if found is None:
        ctx.fail(f"the exported ops of nn.MultiheadAttention {call.path!r} do not compute "
                 "nn.MultiheadAttention of its weights for any head count, batch_first and "
                 f"attn_mask tried; {_SUPPORTED}")
    m, (q, k, v), mask, causal = found
    ctx.cur = call.out
    return emit_mha(ctx, m, call.path, ctx.env[q], ctx.env[k], ctx.env[v],
                    None if causal else mask, causal)
