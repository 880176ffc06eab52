"""ConvLSTM: an LSTM whose gates are 2-D convolutions over a frame (Keras ConvLSTM1D/2D,
the PyTorch ConvLSTM cells users write); a 1-D frame is a 2-D one of height 1.

Frames, state and output are channels-last and stored flat: input (H, W, C), state h and
c (Ho, Wo, F), output h. Per step, with Keras's gate order i, f, c, o (= PyTorch's i, f,
g, o):
    z = conv(x, W_x; strides, dilation, pads) + conv_same(h, W_h) + bias      (Ho, Wo, 4F)
    i, f, o = act_f(z_i, z_f, z_o);  c = f*c + i*act_g(z_c);  h = o*act_h(c)
The recurrent convolution has W_x's kernel size, stride 1, no dilation and 'same' zero
padding (top/left (k-1)//2, the TensorFlow rule Keras uses; PyTorch's k//2 for odd k).

Weights (docs/FORMAT.md): W_x (kh, kw, C, 4F) and W_h (kh, kw, F, 4F) in Keras's layout
(kernel, recurrent_kernel; not transposed), bias (4F), h0/c0 (Ho*Wo*F). PyTorch's
Conv2d weight (4F, C+F, kh, kw) over cat([x, h]) is split at C and transposed (2, 3, 1, 0).

Kernel (measured on a 64x64x1 frame, 16 filters, 3x3: see benchmarks/convlstm.py): each
convolution reads a zero-padded channels-last copy of its input (no bounds checks) and
multiplies it by a packed copy of its weight, 64 output columns per panel (kh*kw*C rows
of 64); four output pixels x 64 columns of sums stay in registers (16 zmm) over all
kh*kw*C rows, so each weight row is loaded once per four pixels. A panel's 64 columns are
the 4 gates of 16 filters (kernels/conv_cell.py gate_columns; the bias likewise), so the
cell runs on one pixel's panel with a loop of exactly 16 lanes; with the default
activations gates i, f, o come halved from the weights (sigmoid(z) = (1 + tanh(z/2))/2).
The recurrent convolution runs at about the core's FMA peak (75.5 MFLOP in ~780 us on
the benchmark's frame), so going further needs fewer multiplications, not a better loop.
So 3x3 kernels with stride 1 and no dilation (any pads: both convolutions are then
'valid' ones of (Ho+2, Wo+2) frames) take Winograd F(4x4, 3x3) over [h | x]
(kernels/winograd.py, _step_winograd), with the cell fused into the output transform:
1094 -> 650 -> ~490 -> ~370 us of thread time per benchmark frame (Stream.step; the last
step: the products' microkernel and the tile transforms as LLVM IR); the row's WH_PACKED is
-1 and WX_PACKED holds the transformed weights. Other kernels stay direct.
"""
from __future__ import annotations

import numpy as np
from numba import carray, njit

from ..kernels import KERNEL
from ..kernels.activations import GATE_ACT_CODES
from ..kernels.conv_cell import CFG_SIZE, FB, cell_block, permute_columns
from ..kernels.linalg import _stack_f32, panel_block_acc
from ..kernels import winograd
from .base import IN, OUT, OpDef, Signature, SpecError, boolean, integer, new_row, number, size

OPCODE = 30
(IN_H, IN_W, IN_C, FILTERS, OUT_H, OUT_W, KH, KW, SH, SW, DH, DW, PAD_T, PAD_L,
 WX_PACKED, WH_PACKED, BIAS, STATE_H, STATE_C, CFG, SCRATCH) = range(3, 24)

WINO_U = WX_PACKED  # the Winograd path's transformed [W_x | W_h]; WH_PACKED is -1 then
PANEL = 64   # output columns per packed panel: 4 zmm accumulators per pixel
BLOCK = 4    # output pixels per register block (16 zmm of sums)
ACC = BLOCK * PANEL  # a literal for the stack array (alloca_once needs a constant size)
_ALIGN = 16
DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")  # f (gates), g (cell input), h (output)


def _pair(a: dict, key: str, default: int, lo: int = 1) -> tuple[int, int]:
    v = a.get(key, [default, default])
    if not isinstance(v, list) or len(v) != 2:
        raise SpecError(f"attribute {key!r} must be a list of 2 integers, got {v!r}")
    return tuple(integer({key: e}, key, lo=lo, hi=4096) for e in v)


def geometry(a: dict) -> dict:
    """Checked sizes of a node: input, output, kernel, padding (also used by emit)."""
    H, W, C = integer(a, "in_height"), integer(a, "in_width"), integer(a, "in_channels")
    F = integer(a, "filters")
    kh, kw = _pair(a, "kernel_size", 1)
    sh, sw = _pair(a, "strides", 1)
    dh, dw = _pair(a, "dilation", 1)
    pads = a.get("pads", [0, 0, 0, 0])
    if not isinstance(pads, list) or len(pads) != 4:
        raise SpecError(f"attribute 'pads' must list 4 integers (top, left, bottom, right), got {pads!r}")
    pt, pl, pb, pr = (integer({"pads": p}, "pads", lo=0, hi=4096) for p in pads)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if H + pt + pb < span_h or W + pl + pr < span_w:
        raise SpecError(f"kernel span ({span_h}, {span_w}) exceeds the padded frame "
                        f"({H + pt + pb}, {W + pl + pr})")
    Ho, Wo = (H + pt + pb - span_h) // sh + 1, (W + pl + pr - span_w) // sw + 1
    M = 4 * F
    Mp = -(-M // PANEL) * PANEL
    Hp, Wp = (Ho - 1) * sh + span_h, (Wo - 1) * sw + span_w  # rows/columns the conv reads
    wino = winograd.applies(kh, kw, sh, sw, dh, dw)
    if wino:
        scratch = winograd.scratch_size(Ho, Wo, C, F, Mp) + 6 * _ALIGN
    else:
        scratch = Ho * Wo * Mp + Hp * Wp * C + (Ho + kh - 1) * (Wo + kw - 1) * F + 3 * _ALIGN
    return dict(H=H, W=W, C=C, F=F, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, pt=pt, pl=pl,
                Ho=Ho, Wo=Wo, M=M, Mp=Mp, Hp=Hp, Wp=Wp, winograd=wino,
                x_size=size(H * W * C), out_size=size(Ho * Wo * F), scratch=size(scratch))


def _activations(a: dict) -> list[dict]:
    acts = a.get("activations")
    if acts is None:
        return [{"kind": k} for k in DEFAULT_ACTIVATIONS]
    if not isinstance(acts, list) or len(acts) != 3:
        raise SpecError(f"attribute 'activations' must list 3 functions (f, g, h), got {acts!r}")
    for s in acts:
        if not isinstance(s, dict) or s.get("kind") not in GATE_ACT_CODES:
            raise SpecError(f"activation must be one of {', '.join(GATE_ACT_CODES)}; got {s!r}")
        number(s, "alpha", 0.0)
        number(s, "beta", 0.0)
    return acts


def spec(a: dict) -> Signature:
    g = geometry(a)
    _activations(a)
    boolean(a, "reverse")
    kh, kw, C, F = g["kh"], g["kw"], g["C"], g["F"]
    n = g["out_size"]
    return Signature([g["x_size"]], n,
                     {"W_x": ((kh, kw, C, 4 * F), True), "W_h": ((kh, kw, F, 4 * F), True),
                      "bias": ((4 * F,), False), "h0": ((n,), False), "c0": ((n,), False)},
                     state={"h": (n, "h0"), "c": (n, "c0")})


def pack_panels(W: np.ndarray, halve: bool = False) -> np.ndarray:
    """W (kh, kw, Cin, 4F) -> (panels, kh*kw*Cin, PANEL): rows in (ky, kx, channel) order,
    columns in conv_cell.gate_columns order (panel q: gates i, f, c, o of filters 16q..16q+15,
    zeros past F), what _conv_acc reads and the cell expects; gates i, f, o halved with
    `halve` (the default activations, conv_cell.permute_columns)."""
    W = np.asarray(W, np.float32)
    K, F = W.shape[0] * W.shape[1] * W.shape[2], W.shape[3] // 4
    full = permute_columns(W.reshape(K, 4 * F), F, halve)
    return np.ascontiguousarray(full.reshape(K, -1, PANEL).transpose(1, 0, 2))


def bias_panels(node, halve: bool) -> np.ndarray:
    """The bias (4F) in gate_columns order, padded to Mp (zeros when the node has none)."""
    F = integer(node.attrs, "filters")
    b = node.weights.get("bias")
    return permute_columns(np.zeros(4 * F, np.float32) if b is None else np.asarray(b, np.float32), F, halve)


def _config(a: dict) -> list[float]:
    acts = _activations(a)
    cfg = [0.0 if [s["kind"] for s in acts] == list(DEFAULT_ACTIVATIONS)
           and not any(s.get("alpha") or s.get("beta") for s in acts) else 1.0]
    for s in acts:
        cfg += [float(GATE_ACT_CODES[s["kind"]]), float(s.get("alpha", 0.0)), float(s.get("beta", 0.0))]
    return cfg


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    g = geometry(a)
    cfg = _config(a)
    halve = cfg[0] == 0  # default activations: the kernels get gates i, f, o halved
    if g["winograd"]:  # W_x is folded into W_h's derived copy (one U per node)
        w_x = em.derived(node, "W_h", f"convlstm.winograd.{halve}",
                         lambda W_h: winograd.transform_weights(node.weights["W_x"], W_h, halve))
        w_h = -1
    else:
        w_x = em.derived(node, "W_x", f"convlstm.panels.{halve}", lambda W: pack_panels(W, halve))
        w_h = em.derived(node, "W_h", f"convlstm.panels.{halve}", lambda W: pack_panels(W, halve))
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, IN_H: g["H"], IN_W: g["W"], IN_C: g["C"], FILTERS: g["F"],
        OUT_H: g["Ho"], OUT_W: g["Wo"], KH: g["kh"], KW: g["kw"], SH: g["sh"], SW: g["sw"],
        DH: g["dh"], DW: g["dw"], PAD_T: g["pt"], PAD_L: g["pl"],
        WX_PACKED: w_x, WH_PACKED: w_h,
        BIAS: em.const(*bias_panels(node, halve)), STATE_H: state["h"], STATE_C: state["c"],
        CFG: em.const(*cfg),
        SCRATCH: em.alloc(g["scratch"])}))


@njit(**KERNEL)
def _aligned(n):
    return n + (-n) % _ALIGN


@njit(**KERNEL)
def pad_copy(src, H, W, C, dst, Hp, Wp, pt, pl):
    """dst (Hp, Wp, C) = src (H, W, C) placed at (pt, pl), zeros around it (rows/columns
    past Hp/Wp are cut: a 'valid' strided conv never reads them). Every dst float is
    written once, so the scratch needs no clearing. Each row is three long loops over
    views indexed from 0 (an index lo + j kept a negative-index check that made the
    copies scalar: 64x64 frame, 16 channels 25 -> 6 us)."""
    z = np.float32(0.0)
    for yy in range(Hp):
        row = dst[yy * Wp * C:(yy + 1) * Wp * C]
        y = yy - pt
        if y < 0 or y >= H:
            for j in range(Wp * C):
                row[j] = z
            continue
        lo = min(pl, Wp) * C
        n = max(0, min(W, Wp - pl)) * C
        head = row[:lo]
        for j in range(lo):
            head[j] = z
        mid = row[lo:lo + n]
        s = src[y * W * C:y * W * C + n]
        for j in range(n):
            mid[j] = s[j]
        tail = row[lo + n:]
        for j in range(Wp * C - lo - n):
            tail[j] = z


@njit(**KERNEL)
def _conv_acc(G, Mp, xp, Wp, C, w, p_off, kh, kw, sy, sx, dy, dx, Ho, Wo):
    """G[(oy*Wo + ox)*Mp + j] += sum over (ky, kx, c) of xp[oy*sy + ky*dy, ox*sx + kx*dx, c]
    * P[(ky*kw + kx)*C + c, j], P the packed weight at w[p_off:] (pack_panels).
    A block of BLOCK pixels x PANEL columns is summed in a stack array that LLVM keeps in
    registers (constant indices after unrolling), over all rows of the panel."""
    acc = carray(_stack_f32(ACC), ACC)
    K = kh * kw * C
    step_px = sx * C
    for q in range(Mp // PANEL):
        wq = p_off + q * K * PANEL
        for oy in range(Ho):
            ox = 0
            while ox < Wo:
                nb = BLOCK if Wo - ox >= BLOCK else 1
                g0 = (oy * Wo + ox) * Mp + q * PANEL
                for b in range(nb):
                    gb = G[g0 + b * Mp:g0 + b * Mp + PANEL]
                    for j in range(PANEL):
                        acc[b * PANEL + j] = gb[j]
                for ky in range(kh):
                    for kx in range(kw):
                        base = ((oy * sy + ky * dy) * Wp + ox * sx + kx * dx) * C
                        rbase = wq + (ky * kw + kx) * C * PANEL
                        panel_block_acc(acc, xp, base, step_px, nb, w, rbase, C)
                for b in range(nb):
                    gb = G[g0 + b * Mp:g0 + b * Mp + PANEL]
                    for j in range(PANEL):
                        gb[j] = acc[b * PANEL + j]
                ox += nb


@njit(**KERNEL)
def _pointwise(G, Mp, F, P, c, h, cfg):
    """The LSTM cell per pixel and 16-filter panel on the gates G (P, Mp) (conv_cell)."""
    for p in range(P):
        for q in range(Mp // PANEL):
            cell_block(G, p * Mp + q * PANEL, FB, c, h, p * F + q * FB, min(FB, F - q * FB), cfg)


@njit(**KERNEL)
def _step_direct(prog, r, w, sc, h, c, cfg):
    """Both convolutions by _conv_acc into the gates of the whole frame, then the cell."""
    H, W, C, F = prog[r, IN_H], prog[r, IN_W], prog[r, IN_C], prog[r, FILTERS]
    Ho, Wo, kh, kw = prog[r, OUT_H], prog[r, OUT_W], prog[r, KH], prog[r, KW]
    sh, sw, dh, dw = prog[r, SH], prog[r, SW], prog[r, DH], prog[r, DW]
    M = 4 * F
    Mp = M + (-M) % PANEL
    P = Ho * Wo
    Hp, Wp = (Ho - 1) * sh + dh * (kh - 1) + 1, (Wo - 1) * sw + dw * (kw - 1) + 1
    Hq, Wq = Ho + kh - 1, Wo + kw - 1
    s0 = prog[r, SCRATCH]
    x0 = s0 + _aligned(P * Mp)
    q0 = x0 + _aligned(Hp * Wp * C)
    G = sc[s0:s0 + P * Mp]
    xp = sc[x0:x0 + Hp * Wp * C]
    hq = sc[q0:q0 + Hq * Wq * F]
    bias = w[prog[r, BIAS]:prog[r, BIAS] + Mp]
    for p in range(P):
        gp = G[p * Mp:(p + 1) * Mp]
        for j in range(Mp):
            gp[j] = bias[j]
    i0 = prog[r, IN]
    pad_copy(sc[i0:i0 + H * W * C], H, W, C, xp, Hp, Wp, prog[r, PAD_T], prog[r, PAD_L])
    pad_copy(h, Ho, Wo, F, hq, Hq, Wq, (kh - 1) // 2, (kw - 1) // 2)
    _conv_acc(G, Mp, xp, Wp, C, w, prog[r, WX_PACKED], kh, kw, sh, sw, dh, dw, Ho, Wo)
    _conv_acc(G, Mp, hq, Wq, F, w, prog[r, WH_PACKED], kh, kw, 1, 1, 1, 1, Ho, Wo)
    _pointwise(G, Mp, F, P, c, h, cfg)


@njit(**KERNEL)
def _step_winograd(prog, r, w, sc, h, c, cfg, out):
    """Both 3x3 convolutions as one Winograd F(4x4, 3x3) over [h | x] (kernels/winograd.py),
    a row of 4x4 tiles at a time, the cell fused into the output transform. h is read from
    its padded copy, so the cell may overwrite it row by row. h and x are padded apart (row
    copies); an interleaved [x | h] frame cost 28 us per 64x64x16 frame against 7 here,
    its pixels' 16-float copies ran as scalar loops. The output (h) is written row by row."""
    H, W, C, F = prog[r, IN_H], prog[r, IN_W], prog[r, IN_C], prog[r, FILTERS]
    Ho, Wo = prog[r, OUT_H], prog[r, OUT_W]
    M = 4 * F
    Mp = M + (-M) % PANEL
    K = C + F
    Kc = K + (-K) % winograd.CHUNK  # winograd.padded_channels
    Ty, Tx = (Ho + 3) // 4, (Wo + 3) // 4
    Hw, Ww = 4 * Ty + 2, 4 * Tx + 2
    h0 = prog[r, SCRATCH]
    x0 = h0 + _aligned(Hw * Ww * F)
    v0 = x0 + _aligned(Hw * Ww * C)
    p0 = v0 + _aligned(36 * Tx * Kc)
    hp = sc[h0:h0 + Hw * Ww * F]
    xp = sc[x0:x0 + Hw * Ww * C]
    V = sc[v0:v0 + 36 * Tx * Kc]
    Pr = sc[p0:p0 + 36 * Tx * Mp]
    bias = w[prog[r, BIAS]:prog[r, BIAS] + Mp]
    i0 = prog[r, IN]
    pad_copy(sc[i0:i0 + H * W * C], H, W, C, xp, Hw, Ww, prog[r, PAD_T], prog[r, PAD_L])
    pad_copy(h, Ho, Wo, F, hp, Hw, Ww, np.int64(1), np.int64(1))
    for ty in range(Ty):
        winograd.input_transform(hp, Ww, F, ty, Tx, V, Kc, np.int64(0))  # first: see its doc
        winograd.input_transform_x(xp, Ww, C, ty, Tx, V, Kc, F)
        winograd.products(V, K, Kc, Tx, w, prog[r, WINO_U], Pr, Mp)
        winograd.output_cell(Pr, Mp, Tx, bias, ty, Ho, Wo, F, c, h, cfg)
        # the output is h: copied row by row while in cache, not as a whole frame after
        # the step (that copy alone measured 13-23 us per 64x64x16 frame, from L3; the row
        # copies were not timed apart)
        lo, hi = 4 * ty * Wo * F, min(4 * ty + 4, Ho) * Wo * F
        ho, oo = h[lo:hi], out[lo:hi]
        for j in range(hi - lo):
            oo[j] = ho[j]


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    """One frame of one stream (a plain call from the interpreter: its body is large)."""
    P, F = prog[r, OUT_H] * prog[r, OUT_W], prog[r, FILTERS]
    h = st[prog[r, STATE_H]:prog[r, STATE_H] + P * F]
    c = st[prog[r, STATE_C]:prog[r, STATE_C] + P * F]
    cfg = w[prog[r, CFG]:prog[r, CFG] + CFG_SIZE]
    out = sc[prog[r, OUT]:prog[r, OUT] + P * F]
    if prog[r, WH_PACKED] < 0:
        _step_winograd(prog, r, w, sc, h, c, cfg, out)
        return
    _step_direct(prog, r, w, sc, h, c, cfg)
    for j in range(P * F):
        out[j] = h[j]


def describe(node, out_size: int) -> str:
    g = geometry(node.attrs)
    return (f"ConvLSTM ({g['H']}, {g['W']}, {g['C']}) -> ({g['Ho']}, {g['Wo']}, {g['F']}) "
            f"kernel {g['kh']}x{g['kw']}")


def example(rng) -> tuple[dict, dict]:
    def u(*shape):
        return rng.uniform(-0.3, 0.3, size=shape).astype(np.float32)
    attrs = {"in_height": 3, "in_width": 5, "in_channels": 2, "filters": 3, "kernel_size": [3, 3],
             "pads": [1, 1, 1, 1]}
    return attrs, {"W_x": u(3, 3, 2, 12), "W_h": u(3, 3, 3, 12), "bias": u(12)}


OPS = (OpDef("ConvLSTM", spec, emit, recurrent=True, describe=describe, example=example),)
