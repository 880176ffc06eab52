"""`convert_torch` of a model over frame sequences (example input (B, T, C, H, W)), once
exported: walk (`frames.py`), write, verify (`frames_verify.py`)."""
from __future__ import annotations

from ..report import ConversionReport
from .frames import analyse_frames, write_frames


def convert_frames(module, ep, example, path, verify: bool, options: dict, source: str,
                   warnings: list[str]) -> ConversionReport:
    import lstm_infer
    walk, outs = analyse_frames(ep, options)
    write_frames(walk, outs, path, source)
    report = ConversionReport(str(path), str(lstm_infer.load(path)),
                              warnings=warnings + walk.warnings)
    if verify:
        from .frames_verify import verify_frames
        report.verify = verify_frames(str(path), module, outs, 1 if walk.t_axis is None else walk.t_axis,
                                      tuple(example.shape), int(options.get("seed", 0)),
                                      float(options.get("tolerance", 1e-4)))
        if not report.verify.ok:
            report.warnings.append(f"verification error {report.verify.max_abs_error:.3g} is above "
                                   f"the tolerance {report.verify.tolerance:g}")
    return report
