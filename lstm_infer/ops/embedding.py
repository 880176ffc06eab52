"""Embedding: a table lookup per step, the first op of a model whose input is token ids.

    y[k*D:(k+1)*D] = table[int(x[k])]      for each of the `count` ids of the step

Weights: `table` (V, D) (PyTorch `nn.Embedding.weight`, ONNX Gather's data), V =
`num_embeddings`, D = `embedding_dim`. Inputs are float32 like every value (DESIGN.md:
other numeric dtypes are converted), so an id arrives as a float holding an integer;
ids up to 2**24 are exact in float32 and V is at most base.MAX_SIZE (2**20).

Bad ids. A valid id is an integer in [0, V) (negative ids do not wrap around as ONNX
Gather's do: no tokenizer produces them, and a wrapped id would hide a bug).
- An Embedding that reads the graph input (what converters write) has its ids checked
  before the step runs: `interpreter.ids_ok` walks the program's Embedding rows over the
  input vector(s); step(), step_many() and StreamPool.step() then raise ValueError naming
  the id, its position and V (`bad_id_error`) and leave the stream state untouched, like
  a NaN input (return code 2 of the step kernels; 1 is NaN/Inf). run() checks with numpy
  in `run_sequence`. This check is not switched off by on_nonfinite="propagate": a NaN id
  is as invalid as 1e9.
- Whatever the file says, the step kernel never reads outside the table: an invalid id
  that reaches it (an Embedding fed by a computed value, which no converter writes)
  yields a zero vector.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, integer, new_row, size

OPCODE = 13
# Row fields after IN, OUT: ids per step K, vocabulary V, row size D, table offset
COUNT, VOCAB, DIM, TABLE = range(3, 7)


def spec(a: dict) -> Signature:
    V, D = integer(a, "num_embeddings"), integer(a, "embedding_dim")
    K = integer(a, "count", default=1)
    return Signature([K], size(K * D), {"table": ((V, D), True)})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    em.add_row(new_row(OPCODE, {IN: ins[0], OUT: out, COUNT: a.get("count", 1),
                                VOCAB: a["num_embeddings"], DIM: a["embedding_dim"],
                                TABLE: em.weight(node, "table")}))


@njit(inline="always", **KERNEL)
def valid_id(v, V) -> bool:
    """v is an integer in [0, V) (False for NaN/Inf)."""
    return v >= 0 and v < V and v == np.floor(v)


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    V = prog[r, VOCAB]
    D = prog[r, DIM]
    t0 = prog[r, TABLE]
    for k in range(prog[r, COUNT]):
        v = sc[i0 + k]
        out = sc[o0 + k * D:o0 + (k + 1) * D]
        if valid_id(v, V):
            row = w[t0 + int(v) * D:t0 + (int(v) + 1) * D]
            for j in range(D):
                out[j] = row[j]
        else:  # never reached for ids from the graph input (checked before the step)
            for j in range(D):
                out[j] = np.float32(0.0)


@njit(inline="always", **KERNEL)
def ids_ok(prog, r, x, in0) -> bool:
    """Row r's ids in the input vector x (whose first element sits at scratch offset in0)
    are valid; True when the row reads another value (the kernel guards those)."""
    if prog[r, IN] != in0:
        return True
    V = prog[r, VOCAB]
    for k in range(prog[r, COUNT]):
        if not valid_id(x[k], V):
            return False
    return True


def _check(x: np.ndarray, V: int, node, what: str) -> None:
    ok = (x >= 0) & (x < V) & (x == np.floor(x))  # NaN compares False
    if not ok.all():
        pos = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise ValueError(f"{what}: token id {float(x[pos]):g} at index {pos} is not an integer in [0, {V}) "
                         f"(the vocabulary of embedding {node.name!r})")


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray) -> np.ndarray:
    x = ins[0]  # (T, B, K)
    a = node.attrs
    V = a["num_embeddings"]
    _check(x.transpose(1, 0, 2), V, node, "X")  # index (sequence, step, id) as run() takes X
    table = node.weights["table"]
    T, B, K = x.shape
    return np.ascontiguousarray(table[x.astype(np.int64)].reshape(T, B, K * a["embedding_dim"]))


def input_embeddings(graph) -> list:
    """The Embedding nodes that read the graph input (their ids are checked before a step)."""
    name = graph.inputs[0][0]
    return [n for n in graph.nodes if n.op == "Embedding" and n.inputs[0] == name]


def token_vocab(graph) -> int | None:
    """The number of valid ids of a model whose input is token ids (the smallest
    vocabulary among the Embeddings reading the input), None for other models."""
    nodes = input_embeddings(graph)
    return min(n.attrs["num_embeddings"] for n in nodes) if nodes else None


def example_inputs(graph, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Random float32 inputs of `shape` that the model accepts: standard normal, or valid
    token ids in [0, V) for a model whose input is token ids (bench, compile, verify)."""
    V = token_vocab(graph)
    if V is None:
        return rng.standard_normal(shape).astype(np.float32)
    return rng.integers(0, V, size=shape).astype(np.float32)


def bad_id_error(graph, X: np.ndarray, what: str) -> ValueError:
    """The error for a step whose ids failed `ids_ok` (X: the step's input, (I,) or (n, I))."""
    for node in input_embeddings(graph):
        try:
            _check(np.asarray(X), node.attrs["num_embeddings"], node, what)
        except ValueError as e:
            return ValueError(f"{e}; nothing was computed and the stream state was left untouched")
    return ValueError(f"{what} holds an invalid token id; the stream state was left untouched")


def describe(node, out_size: int) -> str:
    a = node.attrs
    k = a.get("count", 1)
    return (f"Embedding {a['num_embeddings']}x{a['embedding_dim']}"
            + (f" ({k} ids per step)" if k != 1 else ""))


OPS = (OpDef("Embedding", spec, emit, run_sequence=run_sequence, describe=describe),)
