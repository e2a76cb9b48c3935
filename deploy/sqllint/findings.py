"""One lint finding: where in which file, how bad, which rule, and what to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    col: int
    severity: str  # "error" | "warning" | "info" (acknowledged)
    code: str
    message: str
    # The reason a "-- lint: allow" directive gave; such a finding is not a warning.
    acknowledged: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, object]:
        fields = asdict(self)
        if self.acknowledged is None:
            del fields["acknowledged"]
        return fields
