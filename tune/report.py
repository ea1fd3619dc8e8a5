"""What turn_on reports: the pairs it converted, every BN-like module it left alone and why, and the converted
pairs whose BN is in training mode (they save nothing until their BN uses running statistics)."""

from __future__ import annotations

from dataclasses import dataclass, field

TRAINING_MODE_NOTE = (
    "a pair whose BN is in training mode (batch statistics) runs as Conv then BN and saves nothing; Tune mode "
    "applies while BN uses running statistics: call model.eval(), or tune.freeze_bn_stats(model) to keep BN on "
    "running statistics through model.train() when fine-tuning"
)


@dataclass
class Report:
    """What turn_on did: converted pairs as (conv name, BN name), every BN-like module left alone with why, and the
    converted pairs' BN layers that are in training mode now (they save nothing until they use running statistics)."""

    mode: str = "tune"  # or "deploy"; find_pairs alone leaves it "tune"
    pairs: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    in_training_mode: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        verb = "folded permanently" if self.mode == "deploy" else "converted"
        lines = [f"tune (mode={self.mode!r}): {len(self.pairs)} Conv->BN pairs {verb}, "
                 f"{len(self.skipped)} BN layers left as they were"]
        if self.in_training_mode:
            lines.append(f"  note: {len(self.in_training_mode)} of these BN layers are in training mode: "
                         f"{TRAINING_MODE_NOTE}")
        lines += [f"  left alone: {name}: {reason}" for name, reason in self.skipped[:10]]
        if len(self.skipped) > 10:
            lines.append(f"  ... and {len(self.skipped) - 10} more (see report.skipped)")
        return "\n".join(lines)
