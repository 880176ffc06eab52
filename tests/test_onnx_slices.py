"""ONNX Slice, exactly as the spec (and onnxruntime) computes it: negative steps with
their own clamping rules, INT_MIN/INT_MAX ends, negative starts and ends, several axes.

Folded constants are compared with onnxruntime node by node (one graph holding one Slice
per case, one onnxruntime session); per-step data is sliced along feature axes and
checked with `check` (onnxruntime, whole sequence and streamed, max abs error 1e-5 on
unit-scale data, fp32). Also the pattern torch's F.pad export writes (the pads reversed
with a Slice of step -1), which used to fold to an empty array."""
from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from converters import ConversionError, convert_onnx
from converters.onnx_fold import attrs_of, fold_node, slice_indices

from onnx_helpers import check, init, make_model, rnd, vi

N = helper.make_node
I64_MIN, I64_MAX = -2 ** 63, 2 ** 63 - 1
I32_MIN, I32_MAX = -2 ** 31, 2 ** 31 - 1
RNG = np.random.default_rng(11)


def i64(name, vals):
    return init(name, np.asarray(vals, np.int64))


def _bounds(n: int) -> list[int]:
    return sorted({I64_MIN, I32_MIN, -n - 2, -n - 1, -n, -2, -1, 0, 1, n - 1, n, n + 1,
                   I32_MAX, I64_MAX})


def _run_ort(model, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


@pytest.mark.parametrize("n", [1, 2, 5])
def test_constant_slice_matches_onnxruntime_node_by_node(n):
    """Every start/end of a boundary set x steps -3..3: one Slice node each, folded by
    the converter (`fold_node`) and run by onnxruntime on the same data."""
    data = np.arange(n, dtype=np.float32) * 10 + 1
    cases = list(itertools.product(_bounds(n), _bounds(n), [-3, -2, -1, 1, 2, 3]))
    nodes, inits, outs = [], [], []
    for k, (s, e, st) in enumerate(cases):
        inits += [i64(f"s{k}", [s]), i64(f"e{k}", [e]), i64(f"a{k}", [0]), i64(f"t{k}", [st])]
        nodes.append(N("Slice", ["x", f"s{k}", f"e{k}", f"a{k}", f"t{k}"], [f"y{k}"], name=f"sl{k}"))
        outs.append(vi(f"y{k}", None))
    model = make_model(nodes, [vi("x", [n])], outs, inits, opset=13)
    want = _run_ort(model, {"x": data})
    for k, (s, e, st) in enumerate(cases):
        node = nodes[k]
        ins = [data, np.array([s], np.int64), np.array([e], np.int64), np.array([0], np.int64),
               np.array([st], np.int64)]
        got = fold_node("Slice", node, ins, attrs_of(node), 13)[0]
        assert np.array_equal(got, want[f"y{k}"]), (n, s, e, st, got, want[f"y{k}"])
        assert np.array_equal(data[slice_indices(n, s, e, st)], want[f"y{k}"])


def test_constant_slice_several_axes_and_opset9_attributes():
    x = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    specs = [([-1, 0], [I64_MIN, I64_MAX], [0, 2], [-1, 2]),
             ([3, -2], [0, -6], [1, 0], [-2, -1]),
             ([-1], [-4], [-1], [-1]),
             ([10, 1], [-10, 4], [-2, -3], [-3, 1])]
    nodes, inits, outs = [], [], []
    for k, (s, e, a, st) in enumerate(specs):
        inits += [i64(f"s{k}", s), i64(f"e{k}", e), i64(f"a{k}", a), i64(f"t{k}", st)]
        nodes.append(N("Slice", ["x", f"s{k}", f"e{k}", f"a{k}", f"t{k}"], [f"y{k}"]))
        outs.append(vi(f"y{k}", None))
    model = make_model(nodes, [vi("x", list(x.shape))], outs, inits, opset=13)
    want = _run_ort(model, {"x": x})
    for k, (s, e, a, st) in enumerate(specs):
        ins = [x] + [np.asarray(v, np.int64) for v in (s, e, a, st)]
        got = fold_node("Slice", nodes[k], ins, {}, 13)[0]
        assert np.array_equal(got, want[f"y{k}"]), specs[k]
    # opset 9: starts/ends/axes as attributes, step 1
    node9 = N("Slice", ["x"], ["y"], starts=[-1, 1], ends=[I64_MAX, -1], axes=[2, 0])
    m9 = make_model([node9], [vi("x", list(x.shape))], [vi("y", None)], opset=9)
    got = fold_node("Slice", node9, [x], attrs_of(node9), 9)[0]
    assert np.array_equal(got, _run_ort(m9, {"x": x})["y"])


def test_symbolic_shape_reversed_by_slice(tmp_path):
    """Shape -> Slice(step -1) on a shape holding the symbolic sequence length and batch:
    the reversed shape drives a Reshape that undoes a Transpose."""
    nodes = [N("Transpose", ["x"], ["xt"], perm=[2, 1, 0]),                 # (I, B, T)
             N("Shape", ["xt"], ["sh"]),
             N("Slice", ["sh", "s", "e", "a", "st"], ["rsh"]),             # (T, B, I)
             N("Transpose", ["xt"], ["back"], perm=[2, 1, 0]),
             N("Reshape", ["back", "rsh"], ["xr"]),
             N("LSTM", ["xr", "W", "R", "B"], ["Y"], hidden_size=4)]
    inits = [i64("s", [-1]), i64("e", [I64_MIN]), i64("a", [0]), i64("st", [-1]),
             init("W", rnd(RNG, 1, 16, 3, scale=0.5)), init("R", rnd(RNG, 1, 16, 4, scale=0.5)),
             init("B", rnd(RNG, 1, 32, scale=0.5))]
    model = make_model(nodes, [vi("x", ["seq", "batch", 3])], [vi("Y", None)], inits, opset=13)
    check(model, tmp_path)


@pytest.mark.parametrize("start,end,step", [(-1, I64_MIN, -1), (4, 0, -2), (I64_MAX, -7, -3),
                                            (-2, I32_MIN, -1), (1, I64_MAX, 2), (-5, -1, 1)])
def test_feature_axis_slice_on_per_step_data(tmp_path, start, end, step):
    nodes = [N("Slice", ["x", "s", "e", "a", "st"], ["xs"]),
             N("MatMul", ["xs", "Wd"], ["y"])]
    n_out = len(slice_indices(6, start, end, step))
    inits = [i64("s", [start]), i64("e", [end]), i64("a", [2]), i64("st", [step]),
             init("Wd", rnd(RNG, n_out, 3))]
    model = make_model(nodes, [vi("x", ["seq", "batch", 6])], [vi("y", None)], inits, opset=13)
    check(model, tmp_path)


def test_torch_pad_export_pattern(tmp_path):
    """torch.onnx's F.pad(x, (1, 2)) on (T, B, F): pads [1, 2, 0, 0, 0, 0] reshaped to
    pairs, reversed with Slice(starts=-1, ends=INT64_MIN, steps=-1), transposed and
    flattened into ONNX order [0, 0, 1, 0, 0, 2]."""
    nodes = [N("Reshape", ["p", "shp"], ["p2"]),
             N("Slice", ["p2", "s", "e", "a", "st"], ["p2r"]),
             N("Transpose", ["p2r"], ["p2t"], perm=[1, 0]),
             N("Reshape", ["p2t", "flat"], ["pads"]),
             N("Cast", ["pads"], ["pads64"], to=TensorProto.INT64),
             N("Pad", ["x", "pads64", "cv"], ["xp"], mode="constant"),
             N("MatMul", ["xp", "Wd"], ["y"])]
    inits = [i64("p", [1, 2, 0, 0, 0, 0]), i64("shp", [-1, 2]), i64("s", [-1]),
             i64("e", [I64_MIN]), i64("a", [0]), i64("st", [-1]), i64("flat", [-1]),
             init("cv", np.float32(0.25)), init("Wd", rnd(RNG, 7, 3))]
    model = make_model(nodes, [vi("x", ["seq", "batch", 4])], [vi("y", None)], inits, opset=13)
    m, _, _ = check(model, tmp_path)
    assert m.input_size == 4 and m.output_size == 3


def test_slice_step_zero_and_time_ranges_are_named(tmp_path):
    nodes = [N("Slice", ["x", "s", "e", "a", "st"], ["y"], name="bad_slice")]
    inits = [i64("s", [0]), i64("e", [2]), i64("a", [2]), i64("st", [0])]
    model = make_model(nodes, [vi("x", ["seq", "batch", 6])], [vi("y", None)], inits, opset=13)
    with pytest.raises(ConversionError, match=r"node 'bad_slice' \(Slice\).*step 0"):
        convert_onnx(model, tmp_path / "z.lstm", verify=False)
    inits = [i64("s", [1]), i64("e", [I64_MAX]), i64("a", [0]), i64("st", [1])]
    model = make_model(nodes, [vi("x", ["seq", "batch", 6])], [vi("y", None)], inits, opset=13)
    with pytest.raises(ConversionError, match=r"node 'bad_slice' \(Slice\).*time axis.*step -1"):
        convert_onnx(model, tmp_path / "t.lstm", verify=False)
