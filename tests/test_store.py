from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lionloop.records import Example, Instruction, Verdict
from lionloop.stores.cache import CallCache, cache_key
from lionloop.stores.pool import Pool


def ins(text: str, **kw) -> Instruction:
    return Instruction(text=text, task="t", **kw)


def test_ids_are_content_hashes() -> None:
    assert ins("a").id == ins("a", origin="lion", round_born=3).id
    assert ins("a").id != ins("b").id
    assert Instruction(text="a", task="x").id != Instruction(text="a", task="y").id


def test_insert_is_idempotent_and_keeps_first(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "p.sqlite")
    assert pool.add_instructions([ins("a"), ins("b", split="eval")]) == 2
    assert pool.add_instructions([ins("a", origin="lion", round_born=5)]) == 0
    got = pool.get_instruction(ins("a").id)
    assert got is not None and got.origin == "seed" and got.round_born == 0
    assert pool.count_instructions() == {"train": 1, "eval": 1}
    assert [i.text for i in pool.instructions(["eval"])] == ["b"]


def test_split_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        Instruction(text="a", split="bogus")  # type: ignore[arg-type]
    pool = Pool(tmp_path / "p.sqlite")
    with pytest.raises(sqlite3.IntegrityError):  # and the table refuses it too
        pool.conn.execute("INSERT INTO instructions(id, text, origin, round_born, split) VALUES ('x', 'a', 's', 0, 'bogus')")


def test_transaction_rolls_back_everything(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "p.sqlite")
    with pytest.raises(RuntimeError), pool.transaction():
        pool.add_instructions([ins("a")])
        pool.mark_stage(1, "curate", {"x": 1})
        raise RuntimeError("crash")
    assert pool.count_instructions() == {}
    assert pool.stage_result(1, "curate") is None


def test_reader_sees_committed_rows_while_writer_is_open(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    pool = Pool(path)
    pool.add_instructions([ins("a")])
    reader = Pool(path, readonly=True)
    with pool.transaction():
        pool.add_instructions([ins("b")])
        # WAL: the reader is not blocked and sees only committed data.
        assert reader.count_instructions() == {"train": 1}
    assert reader.count_instructions() == {"train": 2}
    with pytest.raises(sqlite3.OperationalError):
        reader.conn.execute("DELETE FROM instructions")


@pytest.mark.parametrize("folder", ["loop%60-0", "a%2", "what?", "x#y", "sp ace"])
def test_a_pool_opens_read_only_whatever_its_folder_is_called(tmp_path: Path, folder: str) -> None:
    # `bench effect --arm loop%60` names its run folder after the arm; a read-only open is a URI.
    path = tmp_path / folder / "p.sqlite"
    path.parent.mkdir()
    Pool(path).add_instructions([ins("a")])
    assert Pool(path, readonly=True).count_instructions() == {"train": 1}


def test_responses_verdicts_examples(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "p.sqlite")
    a, e = ins("a"), ins("e", split="eval")
    pool.add_instructions([a, e])
    pool.add_responses("teacher", "m", 0, {a.id: "A"})
    pool.add_responses("student", "s", 1, {a.id: "x", e.id: "y"})
    assert pool.teacher_answers() == {a.id: "A"}
    assert pool.student_answers(1) == {a.id: "x", e.id: "y"}
    pool.add_verdicts([Verdict(a.id, 1, 10.0, 3.0, True, "raw")])
    v = pool.verdicts(1)[0]
    assert v.hard is True and v.diff == 7.0
    ex = Example(a.id, "a\n", "A")
    pool.add_examples([ex, ex, Example(e.id, "e\n", "E")])
    # Examples of eval instructions are never returned for training.
    assert [x.completion for x in pool.examples()] == ["A"]


def test_metrics_merge(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "p.sqlite")
    pool.merge_metrics(1, {"seconds": {"imitate": 1.0}, "eval": {"overall": 0.5}})
    m = pool.merge_metrics(1, {"seconds": {"evaluate": 2.0}})
    assert m == {"seconds": {"imitate": 1.0, "evaluate": 2.0}, "eval": {"overall": 0.5}}
    assert pool.rounds()[0]["metrics"] == m


def test_cache_put_get_and_paid_accounting(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.sqlite")
    k1 = cache_key("oracle", "m", {"t": 0}, {"q": 1})
    assert k1 == cache_key("oracle", "m", {"t": 0}, {"q": 1})
    assert k1 != cache_key("oracle", "m", {"t": 1}, {"q": 1})
    assert cache.get(k1) is None
    cache.put(k1, backend="oracle", model="m", request={"q": 1}, response={"text": "x"},
              usage={"prompt_tokens": 3, "completion_tokens": 2}, run_id="r", round=1, stage="curate")
    cache.put(k1, backend="oracle", model="m", request={"q": 1}, response={"text": "other"}, run_id="r")
    assert cache.get(k1)["response"] == {"text": "x"}
    assert cache.repaid() == 1  # the second put paid for a key already held
    assert cache.paid("r") == {(1, "curate"): {"calls": 1, "prompt_tokens": 3, "completion_tokens": 2, "cost": 0.0}}
    assert cache.total_paid("r") == 1 and cache.total_paid("other") == 0
    # A second process (or run) pointed at the same file sees the entry.
    assert CallCache(tmp_path / "c.sqlite").get(k1) is not None
