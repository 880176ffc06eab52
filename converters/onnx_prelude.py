"""Image models whose CNN output width becomes time (CRNN text recognisers): the graph is
split where the 4-D image ops end. The image part becomes the file's prelude (whole-image
ops, run() only, lstm_infer/prelude); the rest converts with the ordinary sequence walk,
its data input being the CNN's output [N, C, H, W] with W as time.

Tried when no axis layout of the data input converts: its 4-D input [N, C, H, W] has fixed
channels and a free width; the height comes from the file, else from `image_height`.
"""
from __future__ import annotations

import numpy as np

from lstm_infer.prelude.graph import check_prelude_nodes

from .errors import ConversionError, OnnxConversionError
from .onnx_fold import attrs_of, fold_node, tensor_to_array
from .onnx_inputs import graph_dims, graph_inputs, opset_of
from .onnx_prelude_ops import HANDLERS, Image, PreludeBuilder


def _is_free(d) -> bool:
    return d is None or isinstance(d, str) or (isinstance(d, int) and d <= 0)


def image_input_layout(data_vi, image_height: int | None) -> tuple[int, int] | None:
    """(channels, height) of an [N, C, H, W] image input with a free width, else None."""
    dims = graph_dims(data_vi)
    if len(dims) != 4 or _is_free(dims[1]) or not _is_free(dims[3]):
        return None
    if not _is_free(dims[2]):
        if image_height is not None and image_height != dims[2]:
            raise ConversionError(f"image_height={image_height}, but the input {data_vi.name!r} "
                                  f"{dims} fixes the height at {dims[2]}")
        return int(dims[1]), int(dims[2])
    if image_height is None:
        raise ConversionError(
            f"the data input {data_vi.name!r} {dims} is an image whose height the file leaves "
            "open; give the height the model was trained on: convert_onnx(..., image_height=32) "
            "(the CLI has no option for it yet)")
    if not isinstance(image_height, int) or image_height < 1:
        raise ConversionError(f"image_height must be a positive integer, got {image_height!r}")
    return int(dims[1]), image_height


def _constants(model) -> dict[str, np.ndarray]:
    return {init.name: tensor_to_array(init) for init in model.graph.initializer}


def _fold(node, consts: dict, opset: int) -> bool:
    """Evaluate a node whose inputs are all constants; False when it cannot be."""
    attrs = attrs_of(node)
    try:
        if node.op_type == "Constant":
            outs = [tensor_to_array(attrs["value"])] if "value" in attrs else None
        else:
            outs = fold_node(node.op_type, node, [consts[i] if i else None for i in node.input],
                             attrs, opset)
    except Exception:
        return False
    if outs is None:
        return False
    for name, v in zip(node.output, outs):
        consts[name] = np.asarray(v)
    return True


def split_image_prelude(model, data_vi, image_height: int | None):
    """(rest model, prelude doc, prelude tensors, info) or None when the graph does not
    start with image ops. The rest model's data input is the cut value."""
    layout = image_input_layout(data_vi, image_height)
    if layout is None:
        return None
    C, H = layout
    opset = opset_of(model)
    consts = _constants(model)
    images: dict[str, Image] = {data_vi.name: Image(data_vi.name, C)}
    pb = PreludeBuilder()
    converted, stopped = set(), None
    for k, node in enumerate(model.graph.node):
        ins = [i for i in node.input if i]
        if all(i in consts for i in ins) and not any(i in images for i in ins):
            if _fold(node, consts, opset):
                continue
        if stopped is None and any(i in images for i in ins):
            handler = HANDLERS.get(node.op_type)
            known = all(i in images or i in consts for i in ins)
            if handler is None or not known or len([o for o in node.output if o]) != 1:
                stopped = node
                continue
            args = [images.get(i, consts.get(i)) if i else None for i in node.input]
            try:
                images[node.output[0]] = handler(pb, node, args, attrs_of(node), node.output[0])
            except OnnxConversionError as e:
                raise OnnxConversionError(f"image node {node.name!r} ({node.op_type}): {e}") from None
            converted.add(k)
    if not converted:
        return None
    rest = [n for k, n in enumerate(model.graph.node) if k not in converted]
    used = {i for n in rest for i in n.input} | {o.name for o in model.graph.output}
    cuts = [v for v in images if v in used]
    where = f" (the image ops end at node {stopped.name!r} ({stopped.op_type}))" if stopped else ""
    if len(cuts) != 1 or cuts[0] == data_vi.name:
        raise OnnxConversionError(
            f"the graph starts with image ops, but the rest of it reads {cuts or 'none'} of their "
            f"values{where}; a prelude must hand one [N, C, H, W] tensor to the sequence part")
    cut = cuts[0]
    _fold_affine_into_conv(pb, cut)
    _fuse_hard_swish(pb, cut)
    doc = {"input": {"name": data_vi.name, "channels": C, "height": H},
           "nodes": pb.nodes, "output": cut}
    try:
        shapes = check_prelude_nodes(doc, pb.tensors)
    except Exception as e:
        raise OnnxConversionError(f"the image ops{where} do not form a valid prelude: {e}") from None
    s = shapes[cut]
    return _rest_model(model, rest, data_vi, cut, s.c, s.h), doc, pb.tensors, \
        {"image_input": data_vi.name, "cut": cut, "channels": C, "height": H,
         "prelude_nodes": len(pb.nodes)}


def _rest_model(model, rest: list, data_vi, cut: str, C: int, H: int):
    """The graph after the cut, with the cut value [batch, C, H, time] as its data input."""
    from onnx import TensorProto, helper
    batch = graph_dims(data_vi)[0]
    inputs = [helper.make_tensor_value_info(cut, TensorProto.FLOAT,
                                            [batch if isinstance(batch, str) else "batch", C, H, "time"])]
    inputs += [vi for vi in graph_inputs(model) if vi.name != data_vi.name]
    g = helper.make_graph(rest, model.graph.name or "rest", inputs, list(model.graph.output),
                          list(model.graph.initializer))
    out = helper.make_model(g, opset_imports=list(model.opset_import))
    out.producer_name = model.producer_name
    out.ir_version = model.ir_version
    return out


def _fold_affine_into_conv(pb: PreludeBuilder, keep: str) -> None:
    """A ChannelAffine2d right after a Conv2d whose output nothing else reads (a folded
    BatchNormalization) becomes part of the conv's weights and bias: one pass less."""
    readers: dict[str, int] = {}
    for n in pb.nodes:
        for v in n["inputs"]:
            readers[v] = readers.get(v, 0) + 1
    producer = {n["outputs"][0]: n for n in pb.nodes}
    drop = []
    for n in pb.nodes:
        src = producer.get(n["inputs"][0])
        if (n["op"] != "ChannelAffine2d" or src is None or src["op"] != "Conv2d"
                or readers.get(src["outputs"][0]) != 1 or src["outputs"][0] == keep):
            continue
        t = pb.tensors
        scale = t.pop(n["weights"]["scale"]) if "scale" in n["weights"] else None
        shift = t.pop(n["weights"]["shift"]) if "shift" in n["weights"] else None
        wname = src["weights"]["W"]
        bname = src["weights"].get("bias") or f"{src['name']}.bias"
        M = t[wname].shape[0]
        bias = t.get(bname, np.zeros(M, np.float32))
        if scale is not None:
            t[wname] = (t[wname] * scale[:, None, None, None]).astype(np.float32)
            bias = bias * scale
        if shift is not None:
            bias = bias + shift
        t[bname] = np.asarray(bias, np.float32)
        src["weights"]["bias"] = bname
        src["outputs"] = n["outputs"]
        producer[n["outputs"][0]] = src
        drop.append(id(n))
    pb.nodes[:] = [n for n in pb.nodes if id(n) not in drop]


def convert_with_prelude(model, data_vi, image_height, fix, state, errors: list, convert_graph):
    """convert_graph's attempt for image models: (builder, meta, warnings), or None when the
    graph does not start with image ops. A failure is raised when no axis layout was even
    tried (it is then the most specific reason), else added to `errors`. `convert_graph`
    (onnx_import's, passed in to keep the imports one-way) converts the sequence part."""
    try:
        split = split_image_prelude(model, data_vi, image_height)
        if split is None:
            return None
        rest, doc, tensors, info = split
        b, meta, warnings = convert_graph(rest, fix=fix, state=state)
        if meta.get("time_axis") != 3 or b.inputs[0]["name"] != info["cut"]:
            raise OnnxConversionError(
                f"after the image ops, the sequence part does not read the width of "
                f"{info['cut']!r} as time (time axis {meta.get('time_axis')})")
        b.set_prelude(doc, tensors)
    except ConversionError as e:
        if not errors:
            raise
        errors.append((-1, len(errors), e))
        return None
    meta["prelude"] = info
    return b, meta, warnings + [f"the image ops up to {info['cut']!r} run once per run() call as "
                                f"a prelude of {info['prelude_nodes']} whole-image ops: the model "
                                "does not stream"]


def _fuse_hard_swish(pb: PreludeBuilder, keep: str) -> None:
    """x * clip(x + 3, 0, 6) / 6 as exported by PaddlePaddle (Add, Clip, Mul, Div: four
    passes over the image and three temporaries) becomes one Act2d hard_swish. Measured on
    PP-OCRv2's recogniser at width 320: 27 of them, ~4 passes each."""
    readers: dict[str, list] = {}
    for n in pb.nodes:
        for v in n["inputs"]:
            readers.setdefault(v, []).append(n)
    t = pb.tensors

    def affine(n, scale, shift) -> bool:
        w = n["weights"]
        if n["op"] != "ChannelAffine2d":
            return False
        for role, want in (("scale", scale), ("shift", shift)):
            if (role in w) != (want is not None):
                return False
            if want is not None and not np.allclose(t[w[role]], want, rtol=0, atol=1e-7):
                return False
        return True

    def only_reader(v: str):
        r = readers.get(v, [])
        return r[0] if len(r) == 1 and v != keep else None
    drop = set()
    for add in pb.nodes:
        if id(add) in drop or not affine(add, None, 3.0):
            continue
        x = add["inputs"][0]
        clip = only_reader(add["outputs"][0])
        if clip is None or clip["op"] != "Act2d" or clip["attrs"].get("kind") != "clip" \
                or clip["attrs"].get("alpha") != 0.0 or clip["attrs"].get("beta") != 6.0:
            continue
        mul = only_reader(clip["outputs"][0])
        if mul is None or mul["op"] != "Binary2d" or mul["attrs"].get("kind") != "mul" \
                or sorted(mul["inputs"]) != sorted([x, clip["outputs"][0]]):
            continue
        div = only_reader(mul["outputs"][0])
        if div is None or not affine(div, 1 / 6, None):
            continue
        for n in (add, clip, mul):
            drop.add(id(n))
        for role in div["weights"].values():
            t.pop(role, None)
        for role in add["weights"].values():
            t.pop(role, None)
        div.update(op="Act2d", inputs=[x], weights={},
                   attrs={"kind": "hard_swish", "alpha": 0.0, "beta": 0.0})
    pb.nodes[:] = [n for n in pb.nodes if id(n) not in drop]
