"""The PyTorch importer's entry points: `convert_torch` (an nn.Module or ExportedProgram),
`convert_torch_file` (.pt2 or state_dict file) and `verify_torch_file`, plus exporting
the module and choosing the example input."""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Any

import numpy as np

from ..errors import ConversionError
from ..report import ConversionReport, VerifyReport
from .emit import analyse, write_ir
from .fx import fx_shape, torch_module
from .mha_hook import mha_leaves
from .xlstm_hook import is_xlstm_stack, xlstm_leaves

__all__ = ["convert_torch", "convert_torch_file", "verify_torch_file", "export_program"]

_KNOWN_OPTIONS = {"outputs", "lengths", "seed", "tolerance", "rnn_nonlinearity",
                  "layernorm_eps", "batch_size", "attention_max_len"}


def _check_dtype(dtype: str) -> None:
    if dtype != "fp32":  # converters.convert_torch/convert_file compress after this (fp16, int8)
        raise ValueError(f"this importer writes fp32; use converters.convert_torch or "
                         f"convert_file for dtype {dtype!r}")


def _split_options(options: dict) -> tuple[dict, list[str]]:
    """(known options, a warning naming the unknown ones): unknown options are ignored."""
    unknown = sorted(set(options) - _KNOWN_OPTIONS)
    return ({k: v for k, v in options.items() if k in _KNOWN_OPTIONS},
            [f"ignored unknown option(s) for PyTorch import: {', '.join(unknown)}"]
            if unknown else [])


@contextlib.contextmanager
def _quiet():
    """Silence torch's warnings while exporting or loading (errors still raise)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _default_example(module):
    """(B=2, T=5, I) or (T=5, B=2, I) from the first submodule that reveals its input size."""
    torch = torch_module()
    nn = torch.nn
    first_rnn = next((m for m in module.modules() if isinstance(m, nn.RNNBase)), None)
    batch_first = True if first_rnn is None else first_rnn.batch_first
    for m in module.modules():
        size = None
        if isinstance(m, nn.Embedding):  # token ids, valid for this table
            return torch.randint(0, m.num_embeddings, (2, 5) if batch_first else (5, 2))
        if isinstance(m, (nn.RNNBase, nn.RNNCellBase)):
            size = m.input_size
        elif isinstance(m, nn.Linear):
            size = m.in_features
        elif isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
            size = m.normalized_shape[0]
        if size is not None:
            return torch.randn((2, 5, size) if batch_first else (5, 2, size))
    raise ValueError("example_input is required: pass a tensor shaped like the model's input, "
                     "e.g. torch.randn(2, 5, input_size) for (B, T, I) or (T, B, I) as the model "
                     "expects")


def _as_example(example):
    torch = torch_module()
    if isinstance(example, (tuple, list)):
        if len(example) != 1:
            raise ValueError(f"example_input must be one tensor, got {len(example)}")
        example = example[0]
    if isinstance(example, np.ndarray):
        example = torch.from_numpy(example if example.dtype.kind in "iu"
                                   else np.asarray(example, np.float32))
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example).__name__}")
    if example.dtype.is_floating_point:
        if example.dim() not in (2, 3, 5):
            raise ValueError(f"example_input has shape {tuple(example.shape)}; expected (B, T, I), "
                             "(T, B, I) or (T, I), or frames (B, T, C, H, W)")
        return example.detach().to(torch.float32)
    return _as_token_ids(example)


def _as_token_ids(example):
    """An integer example input: token ids (B, T), (T, B) or (T,) for nn.Embedding, kept in
    their dtype (int64 or int32, what nn.Embedding takes)."""
    torch = torch_module()
    if example.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"example_input has dtype {example.dtype}; token ids must be torch.int64 "
                         "or torch.int32 (float inputs are features)")
    if example.dim() not in (1, 2):
        raise ValueError(f"integer example_input of shape {tuple(example.shape)}; token ids are "
                         "(B, T), (T, B) or (T,): one id per time step")
    return example.detach()


def export_program(module: Any, example: Any) -> Any:
    """torch.export.export(module, (example,)); a failure to trace is a ConversionError."""
    torch = torch_module()
    # A model that fails to trace makes torch log a traceback per failed fake-tensor op;
    # the ConversionError below carries the message, so keep stderr quiet meanwhile.
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with _quiet(), torch.no_grad():
            return torch.export.export(module, (example,))
    except ConversionError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ConversionError(f"torch.export could not trace the model: {type(e).__name__}: "
                              f"{msg[0] if msg else ''}".rstrip()) from e
    finally:
        log.setLevel(level)


def _export_module(module, example):
    """export_program, saying what to pass when float features meet an nn.Embedding."""
    try:
        return export_program(module, example)
    except ConversionError as e:
        emb = next((m for m in module.modules() if isinstance(m, torch_module().nn.Embedding)), None)
        if emb is None or not example.dtype.is_floating_point:
            raise
        raise ConversionError(
            f"{e}. The model has nn.Embedding, which takes token ids: pass example_input as "
            f"integer ids (torch.long) of shape (B, T), e.g. torch.randint(0, "
            f"{emb.num_embeddings}, (2, 5)), not float features") from e


def _ep_example(ep):
    """Example input of an ExportedProgram: its stored example, else random of the traced shape."""
    torch = torch_module()
    ex = getattr(ep, "example_inputs", None)
    if ex:
        args = ex[0] if isinstance(ex, tuple) and len(ex) == 2 and isinstance(ex[1], dict) else ex
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) == 1:
            t = tensors[0].detach()
            return t.to(torch.float32) if t.dtype.is_floating_point else t
    from torch.export.graph_signature import InputKind
    users = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    for n in ep.graph.nodes:
        if n.op == "placeholder" and n.name in users and hasattr(n.meta.get("val"), "shape"):
            dtype = n.meta["val"].dtype  # token ids: zeros, only the shape is used
            return (torch.randn(fx_shape(n)) if dtype.is_floating_point
                    else torch.zeros(fx_shape(n), dtype=dtype))
    raise ConversionError("the exported program has no tensor input")


def _convert_ep(ep, path, reference, example, verify: bool, options: dict, source: str | None,
                extra_warnings: list[str], provenance: dict) -> ConversionReport:
    """Walk, write and (optionally) verify against `reference` (the module or ep.module())."""
    import lstm_infer
    if example.dim() == 5:  # frame sequences (a .pt2 or ExportedProgram of a ConvLSTM loop)
        from .frames_api import convert_frames
        return convert_frames(reference, ep, example, path, verify, options, source or "torch",
                              extra_warnings)
    an = analyse(ep, options)
    write_ir(an, path, source, provenance)
    report = ConversionReport(str(path), str(lstm_infer.load(path)),
                              warnings=extra_warnings + an.warnings)
    if verify:
        from ..torch_verify import verify_against
        report.verify = verify_against(str(path), reference, an.spec, example,
                                       source=source or "torch", options=options)
        if not report.verify.ok:
            report.warnings.append(f"verification error {report.verify.max_abs_error:.3g} is above "
                                   f"the tolerance {report.verify.tolerance:g}")
    return report


def convert_torch(module: Any, path: str | os.PathLike, example_input: Any = None,
                  dtype: str = "fp32", verify: bool = True, **options) -> ConversionReport:
    """Convert an `nn.Module` (or a `torch.export.ExportedProgram`) into a `.lstm` file.

    `example_input` is one tensor shaped like the model's input: (B, T, I) or (T, B, I) as
    the model's recurrent layers expect (batch_first or not), or (T, I) for an unbatched
    model. Use at least 2 time steps. A model over frames takes (B, T, C, H, W) (or
    (T, B, C, H, W) permuted to it in forward): a ConvLSTM cell loop (Conv2d over
    cat([x, h], 1) split into gates) becomes ConvLSTM nodes, and the file's step() takes
    one (C, H, W) frame (see torch_import/frames.py). A model that starts with nn.Embedding
    takes integer token ids (int64 or int32) of shape (B, T), (T, B) or (T,): the file then
    takes one id per step, as a number, checked against the vocabulary (ops/embedding.py).
    When None, it is built from the first submodule that reveals its input size (nn.Embedding,
    nn.LSTM/GRU/RNN/cells, nn.Linear, nn.LayerNorm).

    Models that return only the last step (`fc(out[:, -1])`, `fc(h_n[-1])`, the last `h` of
    a cell loop) become per-step models: row t of `run()` is the result for the sequence
    ending at step t, so the last row equals the torch output (see the report's warnings).
    Returned `h_n`/`c_n` tensors are dropped (the engine keeps state itself).

    Options: `outputs` (indices into the model's flattened outputs to keep), and for
    verification `lengths` (sequence lengths), `seed`, `tolerance` (default 1e-4).
    `attention_max_len` (default 4096): the longest sequence a full causal self-attention
    (nn.MultiheadAttention / scaled_dot_product_attention with a causal mask, or a last-step
    query over every step) streams; its keys/values are kept for every step up to it, and a
    longer sequence is refused with a ValueError naming the limit. A banded mask of width W
    keeps a ring of W steps and streams forever.
    `dtype` must be "fp32" here (converters.convert_torch compresses to fp16/int8). With
    `verify=True` (default) the written file is run against torch on random inputs, whole
    sequences and streamed in chunks, and the report carries the errors. Unsupported ops
    raise `converters.ConversionError` naming the op and module.
    """
    torch = torch_module()
    _check_dtype(dtype)
    source = options.pop("_source", None)
    options, warns = _split_options(options)
    if isinstance(module, torch.export.ExportedProgram):
        ep = module
        example = _as_example(example_input) if example_input is not None else _ep_example(ep)
        return _convert_ep(ep, path, ep.module(), example, verify, options, None, warns,
                           {"torch_module": "ExportedProgram"})
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"convert_torch needs an nn.Module or ExportedProgram, got {type(module).__name__}")
    was_training = module.training
    module.eval()
    try:
        example = _as_example(example_input) if example_input is not None else _default_example(module)
        if example.dim() == 5:  # frame sequences: a ConvLSTM cell loop (frames.py)
            from .frames_api import convert_frames
            return convert_frames(module, export_program(module, example), example, path, verify,
                                  options, source or type(module).__name__, warns)
        # xLSTM stacks and nn.MultiheadAttention: one op each, converted by class and weights
        with xlstm_leaves(module), mha_leaves(module):
            ep = _export_module(module, example)
            report = _convert_ep(ep, path, module, example, verify, options,
                                 source or type(module).__name__, warns,
                                 {"torch_module": type(module).__name__})
        if verify and is_xlstm_stack(module):
            from .xlstm_verify import verify_package_steps
            verify_package_steps(path, module, report.verify, int(options.get("seed", 0)))
        return report
    finally:
        module.train(was_training)


def _is_pt2(src) -> bool:
    return str(src).lower().endswith(".pt2")


def _load_pt2(src):
    torch = torch_module()
    try:
        with _quiet():
            return torch.export.load(str(src))
    except Exception as e:
        raise ConversionError(f"could not load {src} as a torch.export program (.pt2): "
                              f"{type(e).__name__}: {e}") from e


def convert_torch_file(src: str | os.PathLike, path: str | os.PathLike, dtype: str = "fp32",
                       verify: bool = True, **options) -> ConversionReport:
    """Convert a PyTorch file: `.pt2` from `torch.export.save`, or a state_dict file.

    A `.pt2` program is converted as exported (its example inputs, or random inputs of the
    traced shape, drive verification; a program exported with static shapes is verified
    at that shape only). Anything else is loaded with `torch.load(src, weights_only=True)`
    (a dict with a "state_dict" key is accepted too) and the architecture is inferred from
    key names and shapes, in state_dict order: see `converters.torch_state_dict`. A
    state_dict carries no activation functions between layers, so only stacks of
    recurrent layers + Linear/LayerNorm are inferred; option `rnn_nonlinearity="relu"`
    for RNN layers, `layernorm_eps` for LayerNorm.
    """
    _check_dtype(dtype)
    if _is_pt2(src):
        options, warns = _split_options(options)
        ep = _load_pt2(src)
        return _convert_ep(ep, path, ep.module(), _ep_example(ep), verify, options, str(src),
                           warns, {"torch_module": "ExportedProgram"})
    from ..torch_state_dict import module_from_state_dict_file
    module, example, notes = module_from_state_dict_file(src, **options)
    options = {k: v for k, v in options.items() if k not in ("rnn_nonlinearity", "layernorm_eps")}
    report = convert_torch(module, path, example_input=example, dtype=dtype, verify=verify,
                           _source=str(src), **options)
    report.warnings[:0] = notes
    return report


def verify_torch_file(lstm_path: str | os.PathLike, src: str | os.PathLike,
                      inputs: np.ndarray | None = None, **options) -> VerifyReport:
    """Compare a `.lstm` file with its PyTorch source (`.pt2` or state_dict file).

    `inputs`: an optional numpy array (T, I) or (B, T, I) compared in addition to random
    inputs. Options as for `convert_torch_file`.
    """
    from ..torch_verify import verify_against
    options, _ = _split_options(options)
    if _is_pt2(src):
        ep = _load_pt2(src)
        an = analyse(ep, options)
        reference, example = ep.module(), _ep_example(ep)
    else:
        from ..torch_state_dict import module_from_state_dict_file
        module, example, _ = module_from_state_dict_file(src, **options)
        an = analyse(export_program(module.eval(), example), options)
        reference = module
    # Outputs are matched by position: the file's outputs are in the torch outputs' order.
    return verify_against(str(lstm_path), reference, an.spec, example, source=str(src),
                          options=options, inputs=inputs)
