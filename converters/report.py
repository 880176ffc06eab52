"""Results of conversion and verification, printable for the CLI."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VerifyReport:
    """Max abs / rel error per output, whole sequence (`run`) and streamed step by step."""
    source: str
    run_max_abs: dict[str, float] = field(default_factory=dict)
    run_max_rel: dict[str, float] = field(default_factory=dict)
    stream_max_abs: dict[str, float] = field(default_factory=dict)
    stream_max_rel: dict[str, float] = field(default_factory=dict)
    streamed: bool = True
    notes: list[str] = field(default_factory=list)
    tolerance: float = 1e-4

    @property
    def max_abs_error(self) -> float:
        vals = list(self.run_max_abs.values()) + list(self.stream_max_abs.values())
        return max(vals) if vals else 0.0

    @property
    def ok(self) -> bool:
        """Every output within the tolerance: absolute on unit-scale outputs, relative to
        the output's largest magnitude where that is above 1 (an LSTM cell state grows
        without bound: silero-vad's cn reaches 158, and float32 keeps ~7 digits of it)."""
        return all(min(err, rel.get(name, err)) <= self.tolerance
                   for errs, rel in ((self.run_max_abs, self.run_max_rel),
                                     (self.stream_max_abs, self.stream_max_rel))
                   for name, err in errs.items())

    def __str__(self) -> str:
        lines = [f"verify against {self.source}: max abs error {self.max_abs_error:.3g} "
                 f"({'ok' if self.ok else 'ABOVE TOLERANCE'} at {self.tolerance:g}, relative "
                 "for outputs larger than 1)"]
        for name in self.run_max_abs:
            line = f"  {name}: run max abs {self.run_max_abs[name]:.3g} rel {self.run_max_rel.get(name, 0):.3g}"
            if name in self.stream_max_abs:
                line += (f"; stream max abs {self.stream_max_abs[name]:.3g} "
                         f"rel {self.stream_max_rel.get(name, 0):.3g}")
            lines.append(line)
        if not self.streamed:
            lines.append("  (not streamable: compared whole sequences only)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class ConversionReport:
    output_path: str
    summary: str
    verify: VerifyReport | None = None
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"wrote {self.output_path}", self.summary]
        parts += [f"warning: {w}" for w in self.warnings]
        if self.verify is not None:
            parts.append(str(self.verify))
        return "\n".join(parts)
