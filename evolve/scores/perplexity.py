from typing import ClassVar

from evolve.perplexity import perplexity
from evolve.scores import Score


class Perplexity(Score):
    """exp(total NLL / predicted tokens) over the host's non-overlapping evaluation windows, as the Wanda
    and SparseGPT papers measure it.

        scores: [perplexity]
    """

    name: ClassVar[str] = "perplexity"

    def evaluate(self, host) -> dict[str, float]:
        host.place()
        return {"perplexity": perplexity(host.model, host.windows, host.device)}

    def lower_is_better(self, column: str) -> bool:
        return column == "perplexity"
