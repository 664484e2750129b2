"""The evaluation store: every fitness evaluation, committed to SQLite the moment it finishes.

A row is keyed by (context, key): the context names everything a fitness depends on (model, data,
sparsity points, tokens, semantics), the key is the metric's canonical key. A killed search loses
nothing finished, and any later search in the same context reuses what is here."""
import hashlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    context TEXT NOT NULL,
    key TEXT NOT NULL,
    expression TEXT NOT NULL,
    tree TEXT NOT NULL,
    fitness REAL NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    points TEXT NOT NULL DEFAULT '{}',
    seconds REAL NOT NULL,
    worker TEXT NOT NULL DEFAULT '',
    finished REAL NOT NULL,
    PRIMARY KEY (context, key)
);
CREATE TABLE IF NOT EXISTS contexts (context TEXT PRIMARY KEY, description TEXT NOT NULL);
"""

DATABASE = "evaluations.sqlite"  # a run folder's store
WORST = float("inf")  # the fitness of a NaN, a crash, a timeout or a degenerate metric


@dataclass
class Evaluation:
    key: str
    expression: str
    tree: str  # Pruner-Zero JSON of the evaluated (simplified) tree
    fitness: float  # geometric mean perplexity over the sparsity points; lower is better
    status: str  # ok, early (stopped after a first slice), nan, error, timeout, degenerate
    error: str = ""
    points: str = "{}"  # JSON: perplexity per sparsity point
    seconds: float = 0.0
    worker: str = ""


def context_id(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


class Store:
    def __init__(self, path: str, description: dict):
        self.db = sqlite3.connect(path)
        self.db.executescript(SCHEMA)
        self.context = context_id(description)
        self.db.execute("INSERT OR IGNORE INTO contexts VALUES (?, ?)", (self.context, json.dumps(description, sort_keys=True)))
        self.db.commit()

    def get(self, key: str) -> Evaluation | None:
        row = self.db.execute(
            "SELECT key, expression, tree, fitness, status, error, points, seconds, worker FROM evaluations "
            "WHERE context = ? AND key = ?",
            (self.context, key),
        ).fetchone()
        return Evaluation(*row) if row else None

    def put(self, evaluation: Evaluation) -> None:
        values = asdict(evaluation)
        self.db.execute(
            # A plain INSERT: evaluating a metric twice in one context is a bug, and it fails loudly.
            "INSERT INTO evaluations VALUES (:context, :key, :expression, :tree, :fitness, :status, "
            ":error, :points, :seconds, :worker, :finished)",
            {**values, "context": self.context, "finished": time.time()},
        )
        self.db.commit()

    def absorb(self, other: str) -> int:
        """Copy another database's evaluations of this context (an earlier run's); returns how many."""
        before = self.count()
        self.db.execute("ATTACH DATABASE ? AS other", (other,))
        try:
            self.db.execute("INSERT OR IGNORE INTO evaluations SELECT * FROM other.evaluations WHERE context = ?", (self.context,))
            self.db.commit()
        except sqlite3.DatabaseError:
            pass  # not a store of ours: nothing to take
        finally:
            self.db.execute("DETACH DATABASE other")
        return self.count() - before

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM evaluations WHERE context = ?", (self.context,)).fetchone()[0]

    def close(self) -> None:
        self.db.close()
