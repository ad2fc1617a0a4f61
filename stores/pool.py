"""The run's pool: one SQLite file (WAL) holding instructions, answers, verdicts, rows and metrics."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lionloop.records import Candidate, Example, Instruction, Verdict
from lionloop.stores import migrations
from lionloop.stores.connection import connect


class Pool:
    """Access to one run's SQLite store. Writes go through short explicit transactions."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise FileNotFoundError(self.path)
        self.conn = connect(self.path, readonly)
        self._lock = threading.RLock()
        self._depth = 0
        if not readonly:
            migrations.migrate(self.conn, "pool")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing writes; nests (inner blocks join the outer transaction)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self.conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self.conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self.conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self.conn.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    # -- stage markers: what makes every node idempotent per round ------------------------------

    def stage_result(self, round: int, stage: str) -> dict[str, Any] | None:
        rows = self.query("SELECT result FROM stages WHERE round = ? AND stage = ?", (round, stage))
        return json.loads(rows[0]["result"]) if rows else None

    def mark_stage(self, round: int, stage: str, result: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO stages(round, stage, finished, result) VALUES (?, ?, ?, ?)",
                (round, stage, time.time(), json.dumps(result)),
            )

    # -- instructions ---------------------------------------------------------------------------

    def add_instructions(self, items: Iterable[Instruction]) -> int:
        """Insert instructions; ones whose id exists are left untouched. Returns rows added."""
        added = 0
        with self.transaction() as c:
            for ins in items:
                r = ins.to_row()
                cur = c.execute(
                    "INSERT OR IGNORE INTO instructions(id, text, input, task, origin, parent_id,"
                    " round_born, split, meta) VALUES (:id, :text, :input, :task, :origin,"
                    " :parent_id, :round_born, :split, :meta)",
                    r,
                )
                added += cur.rowcount
        return added

    def instructions(self, splits: Iterable[str] | None = None) -> list[Instruction]:
        if splits is None:
            rows = self.query("SELECT * FROM instructions ORDER BY round_born, id")
        else:
            s = list(splits)
            marks = ",".join("?" * len(s))
            rows = self.query(
                f"SELECT * FROM instructions WHERE split IN ({marks}) ORDER BY round_born, id", s
            )
        return [Instruction.from_row(dict(r)) for r in rows]

    def get_instruction(self, instruction_id: str) -> Instruction | None:
        rows = self.query("SELECT * FROM instructions WHERE id = ?", (instruction_id,))
        return Instruction.from_row(dict(rows[0])) if rows else None

    def _rows_by_id(self, columns: str, ids: Iterable[str]) -> list[Any]:
        """Rows of `instructions` for these ids (by primary key: no scan), in chunks of bound
        parameters (SQLite's default limit is 999)."""
        wanted = list(dict.fromkeys(ids))
        rows: list[Any] = []
        for k in range(0, len(wanted), 900):
            part = wanted[k : k + 900]
            marks = ",".join("?" * len(part))
            rows += self.query(f"SELECT {columns} FROM instructions WHERE id IN ({marks})", part)
        return rows

    def instructions_by_id(self, ids: Iterable[str]) -> dict[str, Instruction]:
        """These instructions, where stored, by id."""
        return {r["id"]: Instruction.from_row(dict(r)) for r in self._rows_by_id("*", ids)}

    def splits_of(self, ids: Iterable[str]) -> dict[str, str]:
        """The split of each of these instructions that is stored."""
        return {r[0]: r[1] for r in self._rows_by_id("id, split", ids)}

    def count_instructions(self) -> dict[str, int]:
        rows = self.query("SELECT split, COUNT(*) AS n FROM instructions GROUP BY split")
        return {r["split"]: r["n"] for r in rows}

    # -- responses ------------------------------------------------------------------------------

    def add_responses(self, role: str, model: str, round: int, answers: dict[str, str],
                      thinking: dict[str, str] | None = None) -> None:
        """Answers by instruction id, each with the `thinking` (stripped) written before it where there was any."""
        thinking = thinking or {}
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO responses(instruction_id, role, model, round, text, thinking)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(iid, role, model, round, text, thinking.get(iid) or "") for iid, text in answers.items()],
            )

    def teacher_answers(self, ids: Iterable[str] | None = None) -> dict[str, str]:
        rows = self.query(
            "SELECT instruction_id, text FROM responses WHERE role = 'teacher' ORDER BY round"
        )
        answers = {r["instruction_id"]: r["text"] for r in rows}
        if ids is not None:
            wanted = set(ids)
            answers = {k: v for k, v in answers.items() if k in wanted}
        return answers

    def student_answers(self, round: int) -> dict[str, str]:
        rows = self.query(
            "SELECT instruction_id, text FROM responses WHERE role = 'student' AND round = ?",
            (round,),
        )
        return {r["instruction_id"]: r["text"] for r in rows}

    # -- verdicts -------------------------------------------------------------------------------

    def add_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO verdicts(instruction_id, round, teacher_score,"
                " student_score, diff, hard, raw) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        v.instruction_id,
                        v.round,
                        v.teacher_score,
                        v.student_score,
                        v.diff,
                        None if v.hard is None else int(v.hard),
                        v.raw,
                    )
                    for v in verdicts
                ],
            )

    def verdicts(self, round: int) -> list[Verdict]:
        rows = self.query("SELECT * FROM verdicts WHERE round = ? ORDER BY instruction_id", (round,))
        return [
            Verdict(
                instruction_id=r["instruction_id"],
                round=r["round"],
                teacher_score=r["teacher_score"],
                student_score=r["student_score"],
                hard=None if r["hard"] is None else bool(r["hard"]),
                raw=r["raw"],
            )
            for r in rows
        ]

    # -- training examples ----------------------------------------------------------------------

    def add_examples(self, examples: Iterable[Example]) -> None:
        with self.transaction() as c:
            c.executemany(
                "INSERT OR IGNORE INTO examples(id, instruction_id, kind, prompt, completion,"
                " generator, round, weight, student) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.id, e.instruction_id, e.kind, e.prompt, e.completion, e.generator, e.round, e.weight,
                     e.student)
                    for e in examples
                ],
            )

    def examples(self) -> list[Example]:
        """The training rows: those of train-split instructions, by round."""
        rows = self.query(
            "SELECT e.* FROM examples e JOIN instructions i ON i.id = e.instruction_id"
            " WHERE i.split = 'train' ORDER BY e.round, e.id"
        )
        return [
            Example(
                instruction_id=r["instruction_id"],
                prompt=r["prompt"],
                completion=r["completion"],
                kind=r["kind"],
                generator=r["generator"],
                round=r["round"],
                weight=r["weight"],
                student=r["student"],
            )
            for r in rows
        ]

    # -- candidates -----------------------------------------------------------------------------

    def replace_candidates(self, round: int, candidates: list[Candidate]) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM candidates WHERE round = ?", (round,))
            c.executemany(
                "INSERT INTO candidates(round, seq, id, generator, payload) VALUES (?, ?, ?, ?, ?)",
                [
                    (round, i, cand.id, cand.generator, json.dumps(_candidate_payload(cand)))
                    for i, cand in enumerate(candidates)
                ],
            )

    def candidates(self, round: int) -> list[Candidate]:
        rows = self.query("SELECT payload FROM candidates WHERE round = ? ORDER BY seq", (round,))
        return [_candidate_from_payload(json.loads(r["payload"])) for r in rows]

    def set_candidate_status(self, round: int, statuses: dict[int, tuple[str, str | None]]) -> None:
        """statuses: candidate position (seq) -> (status, reason)."""
        with self.transaction() as c:
            c.executemany(
                "UPDATE candidates SET status = ?, reason = ? WHERE round = ? AND seq = ?",
                [(st, reason, round, seq) for seq, (st, reason) in statuses.items()],
            )

    # -- failures: rows that could not be answered, with the reason ----------------------------

    def add_failures(self, round: int, stage: str, failures: dict[str, str]) -> None:
        if not failures:
            return
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO failures(round, stage, item_id, reason) VALUES (?, ?, ?, ?)",
                [(round, stage, k, v) for k, v in failures.items()],
            )

    # -- rounds ---------------------------------------------------------------------------------

    def start_round(self, round: int) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO rounds(round, started, metrics) VALUES (?, ?, '{}')",
                (round, time.time()),
            )

    def merge_metrics(self, round: int, update: dict[str, Any]) -> dict[str, Any]:
        """Deep-merge `update` into the round's metrics (one level of nested dicts)."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO rounds(round, started, metrics) VALUES (?, ?, '{}')",
                (round, time.time()),
            )
            row = c.execute("SELECT metrics FROM rounds WHERE round = ?", (round,)).fetchone()
            metrics = json.loads(row["metrics"])
            for k, v in update.items():
                if isinstance(v, dict) and isinstance(metrics.get(k), dict):
                    metrics[k] = {**metrics[k], **v}
                else:
                    metrics[k] = v
            c.execute("UPDATE rounds SET metrics = ? WHERE round = ?", (json.dumps(metrics), round))
        return metrics

    def metrics(self, round: int) -> dict[str, Any]:
        """One round's metrics ({} before it has any)."""
        rows = self.query("SELECT metrics FROM rounds WHERE round = ?", (round,))
        return json.loads(rows[0]["metrics"]) if rows else {}

    def finish_round(self, round: int) -> None:
        with self.transaction() as c:
            c.execute("UPDATE rounds SET finished = ? WHERE round = ?", (time.time(), round))

    def rounds(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM rounds ORDER BY round")
        return [
            {
                "round": r["round"],
                "started": r["started"],
                "finished": r["finished"],
                "metrics": json.loads(r["metrics"]),
            }
            for r in rows
        ]

    # -- embeddings -----------------------------------------------------------------------------

    def add_embeddings(self, model: str, vectors: dict[str, bytes]) -> None:
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO embeddings(instruction_id, model, vector) VALUES (?, ?, ?)",
                [(k, model, v) for k, v in vectors.items()],
            )

    def embedding_ids(self, model: str) -> list[str]:
        """Ids of the stored vectors, in index order (cheap: no vectors read)."""
        rows = self.query("SELECT instruction_id FROM embeddings WHERE model = ? ORDER BY rowid", (model,))
        return [r[0] for r in rows]

    def embeddings(self, model: str) -> list[tuple[str, bytes]]:
        rows = self.query(
            "SELECT instruction_id, vector FROM embeddings WHERE model = ? ORDER BY rowid", (model,)
        )
        return [(r["instruction_id"], r["vector"]) for r in rows]

    # The FAISS index covers the vectors up to a rowid; these let it catch up on the rest without
    # reading what it holds (indexed by `embeddings_model`: no scan of the vectors).

    def embedding_span(self, model: str, upto: int | None = None) -> tuple[int, int]:
        """(number of vectors, largest rowid) of `model`, counting rowids <= `upto` when given."""
        sql = "SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM embeddings WHERE model = ?"
        params: tuple[Any, ...] = (model,)
        if upto is not None:
            sql, params = sql + " AND rowid <= ?", (model, upto)
        n, top = self.query(sql, params)[0]
        return int(n), int(top)

    def embedding_chunks(self, model: str, after: int = 0, size: int = 50_000, every: int = 1) -> Iterator[tuple[list[str], list[bytes], int]]:
        """The vectors with rowid > `after`, in rowid order, `size` rows at a time (every `every`-th
        row only: a sample): yields (instruction ids, vectors, last rowid of the chunk)."""
        last = after
        step = max(1, int(every))
        while True:
            with self._lock:
                rows = self.conn.execute(
                    "SELECT rowid, instruction_id, vector FROM embeddings WHERE model = ? AND rowid > ?"
                    " ORDER BY rowid LIMIT ?", (model, last, size * step),
                ).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            picked = rows[::step]
            yield [r[1] for r in picked], [r[2] for r in picked], last


def _candidate_payload(c: Candidate) -> dict[str, Any]:
    return {
        "instruction": c.instruction.to_row(),
        "generator": c.generator,
        "examples": [e.__dict__ for e in c.examples],
    }


def _candidate_from_payload(p: dict[str, Any]) -> Candidate:
    return Candidate(
        instruction=Instruction.from_row(p["instruction"]),
        generator=p["generator"],
        examples=tuple(Example(**e) for e in p["examples"]),
    )
