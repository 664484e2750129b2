"""What to prune: a ratio, a pattern and the group inside which scores compete."""
import re
from dataclasses import dataclass

from pruners.errors import InputError

PATTERNS = ("unstructured", "N:M", "row-column")
GROUPS = ("row", "layer")


@dataclass(frozen=True)
class Sparsity:
    ratio: float  # share of the weights in each comparison group that become zero
    pattern: str = "unstructured"  # "N:M": keep N of every M consecutive inputs of a row; "row-column": whole rows and columns
    group: str | None = None  # unstructured only: "row" or "layer"; None takes the method's default

    @classmethod
    def parse(cls, pattern: str = "unstructured", ratio: float | None = None, group: str | None = None) -> "Sparsity":
        """ratio None means 0.5 for unstructured, and the implied 1 - N/M for N:M."""
        if group is not None and group not in GROUPS:
            raise InputError(f"unknown comparison group {group!r}; choose row or layer")
        if pattern in ("unstructured", "row-column"):
            ratio = 0.5 if ratio is None else ratio
            if not 0 < ratio < 1:
                raise InputError(f"sparsity must lie strictly between 0 and 1, got {ratio}")
            return cls(float(ratio), pattern, group)
        match = re.fullmatch(r"(\d+):(\d+)", pattern)
        if not match:
            raise InputError(f"unknown pattern {pattern!r}; choose unstructured, N:M (e.g. 2:4) or row-column")
        n, m = int(match[1]), int(match[2])
        if not 0 < n < m:
            raise InputError(f"pattern {pattern}: N:M needs 0 < N < M (N weights kept of every M)")
        implied = 1 - n / m
        if ratio is not None and abs(ratio - implied) > 1e-9:
            raise InputError(f"pattern {pattern} fixes sparsity at {implied:g}, not {ratio:g}")
        if group is not None:
            raise InputError(f"pattern {pattern} compares weights inside blocks of {m}; --group does not apply")
        return cls(implied, pattern)

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) for an N:M pattern, None otherwise."""
        if ":" not in self.pattern:
            return None
        n, m = self.pattern.split(":")
        return int(n), int(m)

    def point(self) -> str:
        """The point as tables and plots name it: "50%", "2:4", "row-column 30%"."""
        share = f"{self.ratio * 100:g}%"
        if self.nm:
            return self.pattern
        return share if self.pattern == "unstructured" else f"{self.pattern} {share}"
