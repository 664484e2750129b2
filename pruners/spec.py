"""What to prune: a ratio, a pattern and the group inside which scores compete."""
import re
from dataclasses import dataclass, replace

from pruners.errors import InputError

PATTERNS = ("unstructured", "N:M", "row-column", "channels", "blocks")
SHARES = ("unstructured", "row-column", "channels")  # patterns whose amount is a share (--sparsity)
GROUPS = ("row", "column", "layer")
ALLOCATIONS = ("uniform", "owl")  # per-block sparsity: the same everywhere, or OWL's (pruners.allocation)


@dataclass(frozen=True)
class Sparsity:
    """ratio: the share of the weights of each comparison group that become zero (unstructured, N:M), of all
    target weights in whole rows and columns (row-column), or of all MLP intermediate channels removed
    (channels); 0 for blocks, whose amount is a count."""

    ratio: float
    pattern: str = "unstructured"  # "N:M": keep N of every M consecutive inputs of a row; see PATTERNS
    group: str | None = None  # unstructured only: "row", "column" or "layer"; None takes the method's default
    blocks: int = 0  # pattern "blocks": how many decoder blocks are removed
    # unstructured only: how the ratio spreads over the blocks (pruners.allocation); None takes the method's
    # default (Pruner.settle: uniform, or what a metric file's search chose)
    allocation: str | None = None
    permute: bool = False  # N:M only: each linear's inputs reordered before its groups of M form (pruners.permute)

    @classmethod
    def parse(cls, pattern: str = "unstructured", ratio: float | None = None, group: str | None = None,
              blocks: int | None = None, allocation: str | None = None, permute: bool = False) -> "Sparsity":
        """ratio None means 0.5 for the shares, and the implied 1 - N/M for N:M."""
        if permute:
            spec = cls.parse(pattern, ratio, group, blocks, allocation)
            if not spec.nm:
                raise InputError(f"--permute reorders input channels for an N:M pattern, not for pattern {pattern}")
            return replace(spec, permute=True)
        if allocation is not None:
            if allocation not in ALLOCATIONS:
                raise InputError(f"unknown allocation {allocation!r}; choose {' or '.join(ALLOCATIONS)}")
            if allocation != "uniform" and pattern != "unstructured":
                raise InputError(f"--allocation spreads unstructured sparsity over the blocks, not pattern {pattern}")
            return replace(cls.parse(pattern, ratio, group, blocks), allocation=allocation)
        if group is not None and group not in GROUPS:
            raise InputError(f"unknown comparison group {group!r}; choose {', '.join(GROUPS)}")
        if group is not None and pattern != "unstructured":
            raise InputError(f"--group compares weights of unstructured sparsity only, not of pattern {pattern}")
        if (blocks is not None) != (pattern == "blocks"):
            raise InputError("pattern blocks and --blocks N (decoder blocks to remove) go together")
        if pattern == "blocks":
            if blocks < 1:
                raise InputError(f"--blocks must be at least 1, got {blocks}")
            if ratio is not None:
                raise InputError("pattern blocks removes --blocks N whole blocks; --sparsity does not apply")
            return cls(0.0, pattern, None, blocks)
        if pattern in SHARES:
            ratio = 0.5 if ratio is None else ratio
            if not 0 < ratio < 1:
                raise InputError(f"sparsity must lie strictly between 0 and 1, got {ratio}")
            return cls(float(ratio), pattern, group)
        match = re.fullmatch(r"(\d+):(\d+)", pattern)
        if not match:
            raise InputError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)} (N:M as e.g. 2:4)")
        n, m = int(match[1]), int(match[2])
        if not 0 < n < m:
            raise InputError(f"pattern {pattern}: N:M needs 0 < N < M (N weights kept of every M)")
        implied = 1 - n / m
        if ratio is not None and abs(ratio - implied) > 1e-9:
            raise InputError(f"pattern {pattern} fixes sparsity at {implied:g}, not {ratio:g}")
        return cls(implied, pattern)

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) for an N:M pattern, None otherwise."""
        if ":" not in self.pattern:
            return None
        n, m = self.pattern.split(":")
        return int(n), int(m)

    def kind(self) -> str:
        """The pattern as methods list what they prune: "N:M" for any N:M."""
        return "N:M" if self.nm else self.pattern

    def point(self) -> str:
        """The point as tables and plots name it: "50%", "2:4", "row-column 30%", "4 blocks"."""
        share = f"{self.ratio * 100:g}%"
        if self.nm:
            return f"{self.pattern} permuted" if self.permute else self.pattern
        if self.pattern == "blocks":
            return f"{self.blocks} block{'s' if self.blocks > 1 else ''}"
        if self.pattern == "unstructured":
            return share if self.allocation in (None, "uniform") else f"{share} {self.allocation}"
        return f"{self.pattern} {share}"
