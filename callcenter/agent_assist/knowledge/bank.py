"""The bank file: learning questions and treatment rules in YAML, with line numbers.

A supervisor keeps the bank in a file under version control; the service
loads it at start (``CALLCENTER_QUESTIONS_FILE``) and ``callcenter assist
load FILE`` loads it by hand. The file is a mapping with two lists::

    questions:
      - key: cards_elsewhere
        text: Do you hold credit cards with another bank?
        kind: yes_no
      - key: card_count
        text: How many cards do you hold elsewhere?
        kind: number
        condition: {answer: cards_elsewhere, eq: yes}
    treatments:
      - key: premium_card
        title: Offer the premium card
        kind: offer
        condition: {all: [{value: {gte: 25000}}, {answer: cards_elsewhere, eq: yes}]}
        reason: High-value customers with cards elsewhere take it up most often

Every problem is reported as ``file:line: what is wrong``, the line being the
field at fault, or the entry's first line. The file is read with YAML 1.2
booleans: only ``true`` and ``false`` are booleans, so ``eq: yes`` and
``choices: [yes, no]`` stay the words a supervisor wrote (PyYAML would
otherwise read them as booleans, the old YAML 1.1 way).

Loading is one transaction under the bank lock: every entry is checked
alone (the pydantic models) and with the whole bank (``check_bank``: unknown
keys, cycles, values a question can never have), and only then written.
Entries managed through the API are left alone; entries an earlier load
wrote and the file no longer has are deactivated, never deleted, since
answers point at them. A bad file changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from callcenter.agent_assist.knowledge.conditions import TAGS
from callcenter.agent_assist.knowledge.conditions import Path as NodePath
from callcenter.agent_assist.knowledge.consistency import BankProblem, check_bank
from callcenter.agent_assist.knowledge.models import BankChange, Source
from callcenter.agent_assist.knowledge.questions import Question
from callcenter.agent_assist.knowledge.store import (
    Bank,
    Q,
    announce,
    describe_problem,
    kind_change,
    list_questions,
    list_treatments,
    question_params,
    treatment_params,
)
from callcenter.agent_assist.knowledge.treatments import Treatment
from callcenter.db.pool import Conn
from callcenter.errors import BankFileError

E = TypeVar("E", Question, Treatment)

#: A bank file larger than this is a mistake (a wrong path, a data dump), not a bank.
MAX_FILE_BYTES = 1_000_000


class _BankLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans (only true/false)."""


_BOOL = "tag:yaml.org,2002:bool"
_BankLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_BankLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class FileEntry(Generic[E]):
    """One question or treatment of the file, with the line of each of its fields."""

    entry: E
    line: int
    lines: Mapping[NodePath, int]

    def line_of(self, path: NodePath) -> int:
        """The line of the deepest part of ``path`` that the file spells out."""
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


@dataclass(frozen=True)
class BankFile:
    name: str
    questions: list[FileEntry[Question]]
    treatments: list[FileEntry[Treatment]]
    #: The entries' own problems as (line, what), when the reader was asked to keep them:
    #: ``load_bank`` reports them together with the checks that need the whole bank.
    problems: tuple[tuple[int, str], ...] = ()
    #: Keys of the questions that failed their own checks. A condition that reads one
    #: is not reading an unknown question; the broken entry is reported on its own.
    broken: frozenset[str] = frozenset()


# -- reading the file ---------------------------------------------------------------


def read_bank(path: Path, *, keep_problems: bool = False) -> BankFile:
    """Read and check ``path`` on its own (no database); ``BankFileError`` lists every problem.

    With ``keep_problems`` only a file that cannot be read at all is refused
    here; the entries' own problems ride along in ``BankFile.problems`` so
    that ``load_bank`` can report them in one list with those it finds
    against the stored bank (a condition reading a question nobody has).
    """
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BankFileError([f"{name}: {size} bytes; a bank file is at most {MAX_FILE_BYTES}"])
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BankFileError([f"{name}: cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise BankFileError([f"{name}: not UTF-8 text ({exc.reason})"]) from None
    return parse_bank(text, name, keep_problems=keep_problems)


def parse_bank(text: str, name: str, *, keep_problems: bool = False) -> BankFile:
    """The entries of a bank file's text, each validated alone, duplicates refused."""
    errors: list[tuple[int, str]] = []
    loader = _BankLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise BankFileError([f"{name}:{line}: not valid YAML: {problem}"]) from None
    finally:
        loader.dispose()
    if root is None:
        raise BankFileError([f"{name}:1: the file is empty; a bank has questions: and treatments:"])
    lines: dict[NodePath, int] = {}
    _positions(root, (), lines, errors)
    if not isinstance(data, dict):
        raise BankFileError(
            [f"{name}:{_line(root)}: a bank file is a mapping with questions: and treatments:"]
        )
    for key in data:
        if key not in ("questions", "treatments"):
            errors.append(
                (lines.get((key,), 1), f"unknown section {key!r}; expected questions, treatments")
            )
    broken: set[str] = set()
    questions = _entries(data, "questions", Question, lines, errors, broken)
    treatments = _entries(data, "treatments", Treatment, lines, errors, set())
    if errors and not keep_problems:
        raise BankFileError([f"{name}:{line}: {what}" for line, what in _sorted(errors)])
    return BankFile(name, questions, treatments, tuple(_sorted(errors)), frozenset(broken))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _positions(
    node: yaml.Node, path: NodePath, out: dict[NodePath, int], errors: list[tuple[int, str]]
) -> None:
    """Record the line of every mapping key and list item under ``path``; flag repeated keys."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                errors.append((_line(key_node), "a mapping key must be a plain word"))
                continue
            key = str(key_node.value)
            if key in first:
                errors.append(
                    (_line(key_node), f"{key!r} appears twice here (first on line {first[key]})")
                )
                continue
            first[key] = _line(key_node)
            out[(*path, key)] = _line(key_node)
            _positions(value_node, (*path, key), out, errors)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = _line(item)
            _positions(item, (*path, i), out, errors)


def _entries(
    data: dict[str, Any],
    section: str,
    model: type[E],
    lines: dict[NodePath, int],
    errors: list[tuple[int, str]],
    broken: set[str],
) -> list[FileEntry[E]]:
    items = data.get(section)
    if items is None:
        return []
    singular = section.removesuffix("s")
    if not isinstance(items, list):
        errors.append((lines.get((section,), 1), f"{section} must be a list of {section}"))
        return []
    found: list[FileEntry[E]] = []
    first_line: dict[str, int] = {}
    for i, item in enumerate(items):
        line = lines.get((section, i), 1)
        entry_lines = {p[2:]: n for p, n in lines.items() if p[:2] == (section, i) and len(p) > 2}
        if not isinstance(item, dict):
            errors.append((line, f"each of the {section} is a mapping (key: ..., ...)"))
            continue
        label = f"{singular} {item['key']!r}" if isinstance(item.get("key"), str) else singular
        try:
            entry = model.model_validate(item)
        except ValidationError as exc:
            errors += _validation_errors(exc, label, line, entry_lines)
            if isinstance(item.get("key"), str):
                broken.add(item["key"])
            continue
        if entry.key in first_line:
            errors.append(
                (
                    entry_lines.get(("key",), line),
                    f"{singular} {entry.key!r} is defined twice (first on line "
                    f"{first_line[entry.key]})",
                )
            )
            continue
        first_line[entry.key] = line
        found.append(FileEntry(entry, line, entry_lines))
    return found


#: Names pydantic puts in an error's location for union members, not fields,
#: and how to say what each member wanted.
_UNION_MEMBERS = {
    "str": "text",
    "constrained-str": "text",
    "int": "a number",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
    "none": "null",
}


def _validation_errors(
    exc: ValidationError, label: str, line: int, lines: Mapping[NodePath, int]
) -> list[tuple[int, str]]:
    """pydantic's errors at their lines; a union's failed members become one message."""
    found: dict[tuple[int, NodePath], list[str]] = {}
    wanted: dict[tuple[int, NodePath], list[str]] = {}
    for error in exc.errors():
        loc = tuple(error["loc"])
        path: NodePath = ()
        for i, part in enumerate(loc):
            step = (*path, part)
            if step not in lines:
                continue
            nxt = loc[i + 1] if i + 1 < len(loc) else None
            if (
                part in TAGS
                and nxt is not None
                and (*step, nxt) not in lines
                and (*path, nxt) in lines
            ):
                continue  # the union's tag, which is also a key of this condition
            path = step
        shown = path
        last = loc[-1] if loc else None
        if error["type"] == "missing" and isinstance(last, str) and last not in _UNION_MEMBERS:
            shown = (*path, last)
        at = (lines.get(path, line) if path else line, shown)
        if isinstance(last, str) and last in _UNION_MEMBERS and error["type"] != "missing":
            wanted.setdefault(at, []).append(_UNION_MEMBERS[last])
            continue
        found.setdefault(at, []).append(str(error["msg"]).removeprefix("Value error, "))
    for at, members in wanted.items():
        found.setdefault(at, []).append("should be " + " or ".join(dict.fromkeys(members)))
    out = []
    for (at_line, shown), messages in found.items():
        field = _field(shown)
        for message in dict.fromkeys(messages):
            out.append(
                (at_line, f"{label}: {field}: {message}" if field else f"{label}: {message}")
            )
    return out


def _field(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _sorted(errors: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return sorted(dict.fromkeys(errors), key=lambda e: e[0])


# -- loading into the database ---------------------------------------------------------


async def load_bank_file(
    conn: Conn, path: Path, *, tiers: Collection[str] | None = None
) -> BankChange:
    """Read ``path`` and load it (see ``load_bank``)."""
    return await load_bank(conn, read_bank(path), tiers=tiers)


async def load_bank(
    conn: Conn, bank_file: BankFile, *, tiers: Collection[str] | None = None
) -> BankChange:
    """Upsert the file's entries in one transaction; ``BankFileError`` changes nothing.

    Problems are refused when they concern an entry of the file, or when the
    file would cause them in an entry it does not hold (an API question
    reading a question whose kind the file changed, say).
    """
    name = bank_file.name
    change = BankChange()
    async with conn.transaction():
        await conn.execute(Q["lock_bank"])
        stored_q = await list_questions(conn)
        stored_t = await list_treatments(conn)
        api_q = {q.key for q in stored_q if q.source is Source.api}
        api_t = {t.key for t in stored_t if t.source is Source.api}
        file_q = {e.entry.key: e for e in bank_file.questions if e.entry.key not in api_q}
        file_t = {e.entry.key: e for e in bank_file.treatments if e.entry.key not in api_t}

        before = Bank(
            tuple(_as_question(q, retire=False) for q in stored_q),
            tuple(_as_treatment(t, retire=False) for t in stored_t),
        )
        after = Bank(
            tuple(
                _as_question(q, retire=q.source is Source.file)
                for q in stored_q
                if q.key not in file_q
                # a file question the file now gets wrong is judged by what the file says
                and not (q.key in bank_file.broken and q.source is Source.file)
            )
            + tuple(e.entry for e in file_q.values()),
            tuple(
                _as_treatment(t, retire=t.source is Source.file)
                for t in stored_t
                if t.key not in file_t
            )
            + tuple(e.entry for e in file_t.values()),
        )
        old = set(check_bank(before.questions, before.treatments, tiers=tiers))
        # The entries' own problems first, so one run reports everything wrong.
        errors: list[tuple[int, str]] = list(bank_file.problems)
        answered = {r["key"] for r in await conn.fetch(Q["answered_questions"])}
        for stored in stored_q:
            entry = file_q.get(stored.key)
            if entry and stored.key in answered and entry.entry.kind is not stored.kind:
                why = f"question {stored.key!r}: kind: the question {kind_change(stored.kind)}"
                errors.append((entry.line_of(("kind",)), why))
        for problem in check_bank(after.questions, after.treatments, tiers=tiers):
            if problem.missing is not None and problem.missing in bank_file.broken:
                continue  # it reads a question of the file that is already reported as broken
            located = _locate(problem, file_q, file_t)
            if located is not None:
                errors.append(located)
            elif problem not in old:
                errors.append((0, describe_problem(problem)))
        if errors:
            # In file order, as an editor walks them; problems outside the file come last.
            errors.sort(key=lambda e: (e[0] == 0, e[0]))
            raise BankFileError(
                [f"{name}:{line}: {what}" if line else f"{name}: {what}" for line, what in errors]
            )

        for key, q_entry in file_q.items():
            row = await conn.fetchrow(Q["upsert_question"], *question_params(q_entry.entry, "file"))
            _tally(change, f"question {key}", row)
        for key, t_entry in file_t.items():
            row = await conn.fetchrow(
                Q["upsert_treatment"], *treatment_params(t_entry.entry, "file")
            )
            _tally(change, f"treatment {key}", row)
        for row in await conn.fetch(Q["deactivate_file_questions"], list(file_q)):
            change.deactivated.append(f"question {row['key']}")
        for row in await conn.fetch(Q["deactivate_file_treatments"], list(file_t)):
            change.deactivated.append(f"treatment {row['key']}")
        change.kept_api += [
            f"question {e.entry.key}" for e in bank_file.questions if e.entry.key in api_q
        ]
        change.kept_api += [
            f"treatment {e.entry.key}" for e in bank_file.treatments if e.entry.key in api_t
        ]
        if change.created or change.updated or change.deactivated:
            await announce(conn)
    return change


def _as_question(stored: BaseModel, *, retire: bool) -> Question:
    question = Question.model_validate(stored.model_dump(include=set(Question.model_fields)))
    return question.model_copy(update={"active": False}) if retire else question


def _as_treatment(stored: BaseModel, *, retire: bool) -> Treatment:
    treatment = Treatment.model_validate(stored.model_dump(include=set(Treatment.model_fields)))
    return treatment.model_copy(update={"active": False}) if retire else treatment


def _locate(
    problem: BankProblem,
    file_q: Mapping[str, FileEntry[Question]],
    file_t: Mapping[str, FileEntry[Treatment]],
) -> tuple[int, str] | None:
    """The problem at its line in the file, if it concerns an entry of the file."""
    entries: Mapping[str, FileEntry[Any]] = file_q if problem.kind == "question" else file_t
    entry = entries.get(problem.key)
    if entry is not None:
        where = f"{problem.kind} {problem.key!r}: {problem.field}"
        return entry.line_of(problem.path), f"{where}: {problem.message}"
    for key in problem.involves:
        if key in file_q:
            where = f"question {key!r}: condition"
            return file_q[key].line_of(("condition",)), f"{where}: {problem.message}"
    return None


def _tally(change: BankChange, label: str, row: Any) -> None:
    if row is None:
        change.unchanged.append(label)
    elif row["inserted"]:
        change.created.append(label)
    else:
        change.updated.append(label)
