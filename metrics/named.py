"""Published metrics written in the language, so that one code path prunes them all."""
from dataclasses import dataclass

from metrics.tree import Node, parse


@dataclass(frozen=True)
class Named:
    name: str
    expression: str
    doc: str

    @property
    def tree(self) -> Node:
        return parse(self.expression)


NAMED = {
    m.name: m
    for m in [
        Named("magnitude", "abs(W)", "Magnitude pruning (Han et al. 2015, arXiv:1506.02626): |W|."),
        Named(
            "wanda", "mul(abs(W), X)",
            "Wanda (Sun et al. 2023, arXiv:2306.11695): |W| times the input channel's activation norm.",
        ),
        Named(
            "pruner-zero", "mul(abs(mul(W, W)), mms(G))",
            "Pruner-Zero's released metric (Dong et al. 2024, arXiv:2406.02924): W^2 times min-max scaled G.",
        ),
        Named(
            "gblm", "mul(abs(W), add(X, mul(100, G)))",
            "GBLM-Pruner (Das et al. 2023, arXiv:2311.04902): |W| (X + 100 G). Its code scales the gradient "
            "by 100 before the L2 norm over samples; our G is unscaled, hence the constant.",
        ),
        Named(
            "ria", "mul(add(divrow(abs(W), W), divcol(abs(W), W)), sqrt(X))",
            "RIA, relative importance and activations (Zhang et al., 'Plug-and-Play', ICLR 2024; code "
            "biomedical-cybernetics/Relative-importance-and-activation-pruning): |W| over the sum of |W| in its "
            "row plus |W| over the sum of |W| in its column, times the input norm to the power a = 0.5 (their "
            "default; their activation is our X over a constant).",
        ),
        Named(
            "taylor", "mul(abs(W), G)",
            "First-order Taylor importance per weight (Molchanov et al. 2019, arXiv:1906.10771; the element "
            "form of LLM-Pruner, arXiv:2305.11627): |W| times the gradient magnitude. Rank-equal to the "
            "Fisher-diagonal OBD saliency W^2 sum(g^2), which shares its canonical key.",
        ),
    ]
}
