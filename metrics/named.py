"""Published metrics written in the language, so that one code path prunes them all."""
from dataclasses import dataclass

from metrics.tree import Node, parse


@dataclass(frozen=True)
class Named:
    name: str
    expression: str
    doc: str
    calibration: tuple[int, int] | None = None  # (samples, tokens per sample) it was found with, if it was
    # where its scores compete at an unstructured point, as the search that found it compared them (a metric
    # file's "group"): a per-layer metric pruned per row is another metric
    group: str = "row"

    @property
    def tree(self) -> Node:
        return parse(self.expression)

    @property
    def choices(self) -> dict[str, str]:
        """The search's choices beside the tree, by the names a metric file gives them."""
        return {"group": self.group}


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
            "evolve-smollm2", "mul(mul(sqr(mul(sqr(W), X)), X), sqr(log(X)))",
            "Found by this project's 50-generation search on the embedded default (configs/search-evolve-"
            "smollm2.yaml: our language, fitness the geometric mean of perplexity at 50%, 60% and 2:4 on 512 "
            "pydoc tokens each, generation 0 seeded with Wanda, RIA, Pruner-Zero's metric and the README "
            "search's W^2 X |log X|). W^4 X^3 log(X)^2: per row it ranks as |W| X^0.75 |log X|^0.5. Written as "
            "found, mul(mul(sqr(mul(sqr(W), div(divrow(X, X), sqr(G)))), X), sqr(log(X))), whose extra factors "
            "are one number per layer; fitness 24.64 (Wanda's 27.37), best of the six validated on the next "
            "2048 tokens, all of which rank alike.",
            calibration=(32, 512),
        ),
        Named(
            "evolve-fisher-smollm2", "mul(mul(sqr(W), divcol(F, W)), abs(log(X)))",
            "`make run`'s metric (configs/search-smollm2.yaml, results/threetext-make-run-smollm2/): W^2 F |log X| "
            "over the column's sum of |W|, compared over each whole layer at unstructured points. Its fitness is "
            "the geometric mean of perplexity at 50%, 60% and 2:4 on 1024 tokens each of pydoc, the model's own "
            "writing and Python source, the comparison group a gene; found per row by an earlier `make run` "
            "(results/selftext-search20-smollm2/), it entered as a seed and nothing beat it (fitness 42.63, "
            "validation 37.93). Against Wanda over five calibration draws on held-out pydoc / licences / Python "
            "source: -18.8 / -11.9 / -18.5% at 50%, -35.1 / -23.7 / -36.0% at 60%, -8.7 / -4.8 / -4.2% at 2:4 (4096 "
            "tokens each); on the licences read whole (results/wholetext-draws-smollm2/) -13.5 / -16.1 / -10.3% at "
            "50% / 60% / 2:4, more than 5% in every draw.",
            calibration=(32, 512), group="layer",
        ),
        Named(
            "taylor", "mul(abs(W), G)",
            "First-order Taylor importance per weight (Molchanov et al. 2019, arXiv:1906.10771; the element "
            "form of LLM-Pruner, arXiv:2305.11627): |W| times the gradient magnitude. Rank-equal to the "
            "Fisher-diagonal OBD saliency W^2 sum(g^2), which shares its canonical key.",
        ),
        Named(
            "token-fisher", "mul(abs(W), F)",
            "Optimal Brain Damage's saliency W^2 F^2 (LeCun et al. 1989) with the empirical Fisher's diagonal "
            "over tokens standing in for the Hessian's (F, the gradients package): per row, Wanda's W^2 X^2 "
            "with each token's input weighed by the squared loss gradient at that output. taylor's G sums a "
            "sample's tokens before squaring; F squares each token's share. Named by this project (see the "
            "README's 'F, the Fisher over tokens').",
        ),
    ]
}


def tree_of(text: str) -> Node:
    """A named metric's tree, or the tree of an expression written out (MetricError if it is neither)."""
    return NAMED[text].tree if text in NAMED else parse(text)
