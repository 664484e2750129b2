"""The metric language: operators, trees, simplification, canonical keys, compilation to torch.

Knows nothing of models: it imports torch and sympy, never transformers.
"""
from metrics.check import DegenerateMetric, check
from metrics.compile import compile_metric, evaluate
from metrics.ops import LEAVES, OPS, SEMANTICS
from metrics.simplify import RULES, simplify
from metrics.symbolic import canonical_key, rank_form, to_sympy
from metrics.tree import MetricError, Node, calibration_of, choice_of, load, parse, save

__all__ = [
    "DegenerateMetric", "LEAVES", "MetricError", "Node", "OPS", "RULES", "SEMANTICS", "calibration_of",
    "canonical_key", "check", "choice_of", "compile_metric", "evaluate", "load", "parse", "rank_form", "save", "simplify", "to_sympy",
]
