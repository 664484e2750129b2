"""The evaluation store: contexts never mix, and absorbing a sibling run takes only its own context."""
import sqlite3

from evolve.store import Evaluation, Store, context_id


def evaluation(key: str, fitness: float) -> Evaluation:
    return Evaluation(key=key, expression=key, tree="{}", fitness=fitness, status="ok")


def test_contexts_in_one_database_are_isolated(tmp_path):
    db = str(tmp_path / "e.sqlite")
    a, b = Store(db, {"points": ["0.5"]}), Store(db, {"points": ["2:4"]})
    a.put(evaluation("abs(W)", 30.0))
    b.put(evaluation("abs(W)", 90.0))  # same metric, another context: its own row
    b.put(evaluation("X", 70.0))
    assert (a.get("abs(W)").fitness, b.get("abs(W)").fitness) == (30.0, 90.0)
    assert a.get("X") is None
    assert (a.count(), b.count()) == (1, 2)
    assert Store(db, {"points": ["0.5"]}).get("abs(W)").fitness == 30.0  # reopened: the context is the description
    assert context_id({"a": 1, "b": 2}) == context_id({"b": 2, "a": 1}) != context_id({"a": 1, "b": 3})


def test_absorb_takes_only_the_same_context_once(tmp_path):
    sibling = str(tmp_path / "sibling.sqlite")
    same, other = Store(sibling, {"points": ["0.5"]}), Store(sibling, {"points": ["0.6"]})
    same.put(evaluation("abs(W)", 30.0))
    same.put(evaluation("mul(abs(W), X)", 20.0))
    other.put(evaluation("G", 50.0))
    mine = Store(str(tmp_path / "mine.sqlite"), {"points": ["0.5"]})
    mine.put(evaluation("abs(W)", 31.0))  # already here: ours is kept
    assert mine.absorb(sibling) == 1
    assert mine.get("mul(abs(W), X)").fitness == 20.0
    assert mine.get("abs(W)").fitness == 31.0
    assert mine.get("G") is None and mine.count() == 2
    assert mine.absorb(sibling) == 0  # a second time takes nothing
    not_a_store = tmp_path / "notes.sqlite"
    sqlite3.connect(not_a_store).execute("CREATE TABLE t (x)").connection.commit()
    assert mine.absorb(str(not_a_store)) == 0 and mine.count() == 2


def test_a_metric_is_stored_once_per_context(tmp_path):
    store = Store(str(tmp_path / "e.sqlite"), {})
    store.put(evaluation("abs(W)", 30.0))
    try:
        store.put(evaluation("abs(W)", 30.0))
    except sqlite3.IntegrityError:
        pass
    else:
        raise AssertionError("a repeated evaluation was stored silently")
