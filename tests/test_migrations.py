"""Schema migrations: numbered steps applied by writers, recorded, idempotent; readers of files an
older lionloop wrote see today's columns without migrating them."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import pool_rows

from lionloop.records import Example
from lionloop.stores import migrations
from lionloop.stores.cache import CallCache, paid_totals
from lionloop.stores.connection import connect
from lionloop.stores.pool import Pool

# What the first release wrote (commit 8b136da): no examples.student, no llm_cache.repaid, and a
# meta table nothing reads any more.
FIRST_RELEASE = """
CREATE TABLE instructions(id TEXT PRIMARY KEY, text TEXT NOT NULL, input TEXT NOT NULL DEFAULT '',
    task TEXT NOT NULL DEFAULT '', origin TEXT NOT NULL, parent_id TEXT, round_born INTEGER NOT NULL,
    split TEXT NOT NULL CHECK (split IN ('train', 'cache', 'eval')), meta TEXT NOT NULL DEFAULT '{}');
CREATE TABLE responses(instruction_id TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('teacher', 'student')),
    model TEXT NOT NULL, round INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (instruction_id, role, round));
CREATE TABLE verdicts(instruction_id TEXT NOT NULL, round INTEGER NOT NULL, teacher_score REAL,
    student_score REAL, diff REAL, hard INTEGER, raw TEXT NOT NULL DEFAULT '', PRIMARY KEY (instruction_id, round));
CREATE TABLE examples(id TEXT PRIMARY KEY, instruction_id TEXT NOT NULL, kind TEXT NOT NULL, prompt TEXT NOT NULL,
    completion TEXT NOT NULL, generator TEXT NOT NULL, round INTEGER NOT NULL, weight REAL NOT NULL DEFAULT 1.0);
CREATE TABLE candidates(round INTEGER NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, generator TEXT NOT NULL,
    payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', reason TEXT, PRIMARY KEY (round, seq));
CREATE TABLE failures(round INTEGER NOT NULL, stage TEXT NOT NULL, item_id TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (round, stage, item_id));
CREATE TABLE rounds(round INTEGER PRIMARY KEY, started REAL, finished REAL, metrics TEXT NOT NULL DEFAULT '{}');
CREATE TABLE stages(round INTEGER NOT NULL, stage TEXT NOT NULL, finished REAL NOT NULL,
    result TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (round, stage));
CREATE TABLE embeddings(instruction_id TEXT PRIMARY KEY, model TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE llm_cache(key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL, request TEXT NOT NULL,
    response TEXT NOT NULL, usage TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL, run_id TEXT NOT NULL DEFAULT '',
    round INTEGER NOT NULL DEFAULT 0, stage TEXT NOT NULL DEFAULT '');
INSERT INTO instructions(id, text, origin, round_born, split) VALUES ('i1', 'copy ab', 'seed', 0, 'train');
INSERT INTO examples VALUES ('e1', 'i1', 'answer', 'copy ab\n', 'ab', 'seed', 0, 1.0);
INSERT INTO meta VALUES ('note', '"kept"');
INSERT INTO llm_cache VALUES ('k1', 'oracle', 'm', '{}', '{}', '{"prompt_tokens": 5, "cost": 0.25}', 0, 'r', 1, 'curate');
"""


def old_file(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(FIRST_RELEASE)
    conn.commit()
    conn.close()
    return path


def recorded(path: Path) -> list[tuple[str, str]]:
    return [tuple(r) for r in pool_rows(path, "SELECT db, name FROM _migrations ORDER BY db, rowid")]


def test_steps_are_numbered_and_named_once_per_schema() -> None:
    for steps in migrations.SCHEMAS.values():
        names = [s.name for s in steps]
        assert names == sorted(names) and len(set(names)) == len(names)
        assert all(n[:1] == "m" and n[1:4].isdigit() for n in names)


def test_a_fresh_file_gets_every_step_recorded(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    Pool(path).close()
    CallCache(path).close()
    assert recorded(path) == [("cache", "m001_llm_cache"), ("cache", "m002_llm_cache_repaid"),
                              ("pool", "m001_tables"), ("pool", "m002_examples_student"),
                              ("pool", "m003_embeddings_model"), ("pool", "m004_teacher_batches"),
                              ("pool", "m005_responses_thinking")]
    conn = sqlite3.connect(path)
    assert migrations.columns(conn, "examples")[-1] == "student"
    assert migrations.columns(conn, "responses")[-1] == "thinking"
    assert migrations.columns(conn, "llm_cache")[-1] == "repaid"
    assert migrations.missing_columns(conn) == {}
    assert "meta" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    # Opening again applies nothing.
    assert migrations.migrate(conn, "pool") == [] and migrations.migrate(conn, "cache") == []
    conn.close()


def test_an_old_pool_is_read_as_current_without_being_touched(tmp_path: Path) -> None:
    path = old_file(tmp_path / "old.sqlite")
    reader = Pool(path, readonly=True)
    assert migrations.missing_columns(reader.conn) == {"examples": {"student": "''"}, "responses": {"thinking": "''"},
                                                       "llm_cache": {"repaid": "0"}}
    assert [(e.completion, e.student) for e in reader.examples()] == [("ab", "")]
    reader.close()
    assert paid_totals(path, "r") == {"paid": 1, "repaid": 0, "prompt_tokens": 5, "completion_tokens": 0,
                                      "cost": 0.25, "saved": 0.0}
    # The file itself is as it was: no column added, no migration recorded.
    assert "_migrations" not in {r[0] for r in pool_rows(path, "SELECT name FROM sqlite_master")}
    assert "student" not in [r[1] for r in pool_rows(path, "PRAGMA table_info(examples)")]


def test_a_writer_migrates_an_old_pool_and_keeps_its_data(tmp_path: Path) -> None:
    path = old_file(tmp_path / "old.sqlite")
    pool = Pool(path)
    assert [(e.completion, e.student) for e in pool.examples()] == [("ab", "")]
    pool.add_examples([Example("i1", "copy ab\n", "ab!", student="decomposer")])
    assert sorted(e.student for e in pool.examples()) == ["", "decomposer"]
    pool.close()
    cache = CallCache(path)
    assert cache.paid("r") == {(1, "curate"): {"calls": 1, "prompt_tokens": 5, "completion_tokens": 0, "cost": 0.25}}
    cache.put("k1", backend="oracle", model="m", request={}, response={}, run_id="r")
    assert cache.repaid("r") == 1
    cache.close()
    assert pool_rows(path, "SELECT key, value FROM meta") == [("note", '"kept"')]  # user data stays
    assert [n for _, n in recorded(path)] == ["m001_llm_cache", "m002_llm_cache_repaid", "m001_tables",
                                              "m002_examples_student", "m003_embeddings_model",
                                              "m004_teacher_batches", "m005_responses_thinking"]
    # Idempotent: opening the migrated file again changes nothing.
    Pool(path).close()
    CallCache(path).close()
    assert len(recorded(path)) == 7
    conn = connect(path, readonly=True)
    assert migrations.missing_columns(conn) == {}
    conn.close()


def test_a_pool_written_before_migrations_were_recorded_gets_them_recorded(tmp_path: Path) -> None:
    """The previous code created today's columns itself and kept no record: nothing to redo."""
    path = tmp_path / "p.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in (*migrations.POOL, *migrations.CACHE):
        step.apply(conn)
    assert migrations.migrate(conn, "pool") == ["m001_tables", "m002_examples_student", "m003_embeddings_model",
                                                "m004_teacher_batches", "m005_responses_thinking"]
    conn.close()
    assert [r[1] for r in pool_rows(path, "PRAGMA table_info(examples)")].count("student") == 1


def test_writers_opening_one_file_at_once_apply_each_step_once(tmp_path: Path) -> None:
    # Fresh files, several times over: the race on switching a new file to WAL mode is hit
    # in a few tries of a hundred.
    for attempt in range(100):
        path = tmp_path / f"p{attempt}.sqlite"
        errors: list[BaseException] = []

        def open_it(path: Path = path, errors: list[BaseException] = errors) -> None:
            try:
                Pool(path).close()
                CallCache(path).close()
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"attempt {attempt}"
        assert len(recorded(path)) == 7


@pytest.fixture()
def old_run(micro_run: Path, tmp_path: Path) -> Path:
    """The micro run as an older lionloop would have left it: no examples.student."""
    dst = tmp_path / "run"
    shutil.copytree(micro_run, dst, ignore=shutil.ignore_patterns("student"))
    conn = sqlite3.connect(dst / "pool.sqlite")
    conn.execute("ALTER TABLE examples DROP COLUMN student")
    conn.execute("DROP TABLE _migrations")
    conn.commit()
    conn.close()
    return dst


def test_views_read_an_unmigrated_run(old_run: Path) -> None:
    from lionloop.inspect.export import export_rows
    from lionloop.inspect.status import run_status
    from lionloop.inspect.views import list_instructions, show_instruction

    rows, _ = export_rows(old_run)
    assert rows and {r["student"] for r in rows} == {""}
    iid = list_instructions(old_run, split="train", sort="id", limit=1)["rows"][0]["id"]
    assert {e["student"] for e in show_instruction(old_run, iid)["examples"]} == {""}
    assert run_status(old_run)["teacher_calls"]["paid"] > 0
    assert "student" not in [r[1] for r in pool_rows(old_run, "PRAGMA table_info(examples)")]
