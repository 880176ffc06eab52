"""Weight layouts: how PyTorch's and ONNX's linear and recurrent weights become the IR's.

The rules, each written once (the IR is documented in docs/FORMAT.md):

* Matrices are (in, out), the transpose of PyTorch's `weight` (out, in): a kernel computes
  `x @ W` for one time step, reading W row by row (one contiguous row per input feature).
  nn.Linear `weight` (O, I) -> `W` (I, O); `weight_ih` (G*H, I) -> `W_ih` (I, G*H);
  `weight_hh` (G*H, R) -> `W_hh` (R, G*H); LSTM projection `weight_hr` (P, H) -> `W_hr` (H, P).
* Gate blocks (G of them, H rows each in PyTorch's and ONNX's (out, in) layout) are in
  PyTorch's order: LSTM i, f, g, o (G = 4); GRU r, z, n (G = 3); RNN one block.
* Biases: LSTM and RNN keep one `bias` = b_ih + b_hh (the two are only ever added). GRU
  keeps `b_ih` and `b_hh` apart: b_hn sits inside r * (h W_hn + b_hn).
* ONNX stores W (G*H, I), R (G*H, H) and B = [Wb, Rb] (2*G*H) per direction in PyTorch's
  (out, in) layout but with other gate orders: LSTM i, o, f, c -> ours is blocks [0, 2, 3, 1]
  of theirs (c is our g); GRU z, r, h -> blocks [1, 0, 2]. Then the PyTorch rules apply.
  LSTM peepholes P (3H) are i, o, f in ONNX and i, f, o in the IR: blocks [0, 2, 1].
* Keras stores `kernel` (I, G*H) and `recurrent_kernel` (H, G*H) already in the IR's
  (in, out) layout: no transpose. Gate blocks are *column* blocks: LSTM i, f, c, o is the
  IR's order (c is our g); GRU z, r, h -> column blocks [1, 0, 2]. LSTM/SimpleRNN `bias`
  (G*H) is the IR's `bias` (Keras has one bias). GRU `bias` is (2, 3H) with
  reset_after=True (row 0 input, row 1 recurrent: b_ih, b_hh) and (3H) with
  reset_after=False (input bias only; the IR's b_hh is then absent, i.e. zero).
* Keras MultiHeadAttention projections are EinsumDense kernels (F, heads, d) with bias
  (heads, d): reshaped row-major to (F, heads*d), column h*d + j = kernel[:, h, j], so head
  h is columns h*d..(h+1)*d, the IR's split (no transpose). The output kernel
  (heads, d_v, *out) is reshaped to (heads*d_v, prod(out)), row h*d_v + j. The IR has one
  head_dim D for q, k and v: when key_dim != value_dim each head's shorter block is padded
  with zero columns (zero rows of the output kernel), which changes no dot product.

* Embedding tables keep their rows: PyTorch `nn.Embedding.weight` (V, D) and ONNX Gather's
  data (V, *rest) are the IR's `table` (V, D) as stored (row v is id v's vector; an ONNX
  table's trailing dims are flattened row-major into D). No transpose.

These functions reorder and transpose only; they keep the dtype they are given (the ONNX
importer folds biases in float64, the PyTorch importer in float32; the file stores float32).
"""
from __future__ import annotations

import numpy as np

__all__ = ["GATES", "ONNX_GATE_ORDER", "ONNX_PEEPHOLE_ORDER", "KERAS_GATE_ORDER", "linear_weight",
           "reorder_blocks", "recurrent_weights", "onnx_recurrent_weights",
           "keras_recurrent_weights", "keras_attention_kernel", "keras_attention_output",
           "recurrent_shapes", "embedding_node"]

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# ONNX gate block k of ours is block ONNX_GATE_ORDER[op][k] of theirs.
ONNX_GATE_ORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}
ONNX_PEEPHOLE_ORDER = [0, 2, 1]
# Keras gate (column) block k of ours is block KERAS_GATE_ORDER[op][k] of theirs.
KERAS_GATE_ORDER = {"LSTM": [0, 1, 2, 3], "GRU": [1, 0, 2], "RNN": [0]}


def linear_weight(weight: np.ndarray) -> np.ndarray:
    """A PyTorch-layout matrix (out, in) -> the IR's (in, out)."""
    return weight.T


def reorder_blocks(M: np.ndarray, order: list[int], H: int) -> np.ndarray:
    """The row blocks of height H of M (or the H-long pieces of a vector) in `order`."""
    return np.concatenate([M[k * H:(k + 1) * H] for k in order], axis=0)


def recurrent_weights(op: str, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
                      b_hh: np.ndarray | None = None,
                      w_hr: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One direction of a PyTorch LSTM/GRU/RNN layer or cell (weight_ih, weight_hh, bias_ih,
    bias_hh, weight_hr) -> IR weights W_ih, W_hh, bias (or GRU b_ih, b_hh), W_hr."""
    w = {"W_ih": linear_weight(w_ih), "W_hh": linear_weight(w_hh)}
    if b_ih is not None:
        if op == "GRU":
            w["b_ih"], w["b_hh"] = b_ih, b_hh
        else:
            w["bias"] = b_ih + b_hh
    if w_hr is not None:
        w["W_hr"] = linear_weight(w_hr)
    return w


def onnx_recurrent_weights(op: str, W: np.ndarray, R: np.ndarray, B: np.ndarray | None = None,
                           P: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One direction of an ONNX LSTM/GRU/RNN (W (G*H, I), R (G*H, H), B (2*G*H), LSTM P (3H))
    -> IR weights W_ih, W_hh, bias (or GRU b_ih, b_hh), peephole."""
    H = R.shape[-1]
    n = GATES[op] * H
    order = ONNX_GATE_ORDER[op]
    b_ih = b_hh = None
    if B is not None:
        b_ih, b_hh = reorder_blocks(B[:n], order, H), reorder_blocks(B[n:], order, H)
    w = recurrent_weights(op, reorder_blocks(W, order, H), reorder_blocks(R, order, H), b_ih, b_hh)
    if P is not None:
        w["peephole"] = reorder_blocks(P, ONNX_PEEPHOLE_ORDER, H)
    return w


def keras_recurrent_weights(op: str, kernel: np.ndarray, recurrent_kernel: np.ndarray,
                            bias: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One Keras LSTM/GRU/SimpleRNN cell (kernel (I, G*H), recurrent_kernel (H, G*H), bias)
    -> IR weights W_ih, W_hh, bias (or GRU b_ih, b_hh). No transpose: Keras is (in, out)."""
    H = recurrent_kernel.shape[0]
    order = KERAS_GATE_ORDER[op]

    def columns(M: np.ndarray) -> np.ndarray:
        return reorder_blocks(M.T, order, H).T

    w = {"W_ih": columns(kernel), "W_hh": columns(recurrent_kernel)}
    if bias is None:
        return w
    if op != "GRU":
        w["bias"] = reorder_blocks(bias, order, H)
    elif bias.ndim == 2:  # reset_after=True: input and recurrent biases
        w["b_ih"], w["b_hh"] = reorder_blocks(bias[0], order, H), reorder_blocks(bias[1], order, H)
    else:                 # reset_after=False: one (input) bias
        w["b_ih"] = reorder_blocks(bias, order, H)
    return w


def keras_attention_kernel(kernel: np.ndarray, bias: np.ndarray | None,
                           D: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A Keras MultiHeadAttention projection kernel (F, heads, d) and bias (heads, d) ->
    the IR's Linear W (F, heads*D) and bias (heads*D), each head zero-padded from d to D."""
    F, H, d = kernel.shape
    W = np.zeros((F, H, D), kernel.dtype)
    W[:, :, :d] = kernel
    b = None
    if bias is not None:
        b = np.zeros((H, D), bias.dtype)
        b[:, :d] = bias
        b = b.reshape(H * D)
    return W.reshape(F, H * D), b


def keras_attention_output(kernel: np.ndarray, D: int) -> np.ndarray:
    """A Keras MultiHeadAttention output kernel (heads, d_v, *out) -> the IR's Linear W
    (heads*D, prod(out)), zero rows for each head's padding from d_v to D."""
    H, d = kernel.shape[:2]
    K = kernel.reshape(H, d, -1)
    W = np.zeros((H, D, K.shape[2]), kernel.dtype)
    W[:, :d] = K
    return W.reshape(H * D, K.shape[2])


def recurrent_shapes(op: str, input_size: int, hidden_size: int,
                     proj_size: int = 0) -> dict[str, tuple[int, ...]]:
    """IR weight shapes of one direction, for building models directly in the IR (tests)."""
    I, H = input_size, hidden_size
    R = proj_size or H
    G = GATES[op]
    s = {"W_ih": (I, G * H), "W_hh": (R, G * H)}
    if op == "GRU":
        s["b_ih"] = s["b_hh"] = (G * H,)
    else:
        s["bias"] = (G * H,)
    if proj_size:
        s["W_hr"] = (H, proj_size)
    s["h0"] = (R,)
    if op == "LSTM":
        s["c0"] = (H,)
    return s


def embedding_node(table: np.ndarray, count: int = 1) -> tuple[dict, dict]:
    """An embedding table (V, *rest) looked up at `count` token ids per step -> the IR
    `Embedding` node's (attrs, weights); the PyTorch and ONNX importers both emit this."""
    V = int(table.shape[0])
    D = int(np.prod(table.shape[1:], dtype=np.int64))
    return ({"num_embeddings": V, "embedding_dim": D, "count": int(count)},
            {"table": np.asarray(table, np.float32).reshape(V, D)})
