"""Checks that span the whole bank, shared by the file loader and the API. Pure.

Each entry is valid on its own once pydantic has read it; these rules need
the other entries too:

* every question key a condition reads exists in the bank;
* question conditions do not depend on each other in a circle (``a`` asked
  only after ``b`` is answered, ``b`` only after ``a``): none of them could
  ever be asked;
* a compared value is one the question can have (``eq: maybe`` on a yes/no
  question, a choice not listed, a numeric bound on a text question);
* tiers named in a condition exist, when the caller says which tiers do;
* keys are unique among questions and among treatments.

A problem names the entry, the path inside it (so the file loader can point
at the line) and what is wrong.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from callcenter.agent_assist.knowledge import conditions
from callcenter.agent_assist.knowledge.conditions import AnswerTest, Node, Path, TierIn
from callcenter.agent_assist.knowledge.questions import AnswerKind, Question, check_answer
from callcenter.agent_assist.knowledge.treatments import Treatment
from callcenter.errors import InvalidAnswer


@dataclass(frozen=True)
class BankProblem:
    kind: str  # "question" or "treatment"
    key: str
    path: Path
    message: str
    #: Every question in a cycle (the problem is reported on the first of them).
    involves: tuple[str, ...] = ()
    #: The question key a condition reads that the bank does not hold, for that problem.
    missing: str | None = None

    @property
    def field(self) -> str:
        """The path as the API names fields: ``condition.all[0].answer``."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


def check_bank(
    questions: Sequence[Question],
    treatments: Sequence[Treatment],
    *,
    tiers: Collection[str] | None = None,
) -> list[BankProblem]:
    """Every problem of the bank as a whole; empty when it is sound."""
    problems: list[BankProblem] = []
    problems += _duplicates("question", [q.key for q in questions])
    problems += _duplicates("treatment", [t.key for t in treatments])
    by_key = {q.key: q for q in questions}
    entries: list[tuple[str, str, Node | None]] = [
        ("question", q.key, q.condition) for q in questions
    ] + [("treatment", t.key, t.condition) for t in treatments]
    for kind, key, condition in entries:
        if condition is None:
            continue
        for path, node in conditions.walk(condition, ("condition",)):
            problems += _node_problems(kind, key, path, node, by_key, tiers)
    problems += _cycles(questions)
    return problems


def _duplicates(kind: str, keys: list[str]) -> list[BankProblem]:
    seen: set[str] = set()
    found = []
    for key in keys:
        if key in seen:
            found.append(BankProblem(kind, key, ("key",), f"{kind} {key!r} is defined twice"))
        seen.add(key)
    return found


def _node_problems(
    kind: str,
    key: str,
    path: Path,
    node: Node,
    bank: dict[str, Question],
    tiers: Collection[str] | None,
) -> list[BankProblem]:
    if isinstance(node, TierIn):
        if tiers is None:
            return []
        unknown = [t for t in node.tier if t not in tiers]
        if unknown:
            return [
                BankProblem(
                    kind,
                    key,
                    (*path, "tier"),
                    f"unknown tier {unknown[0]!r} in the condition; "
                    f"known tiers: {', '.join(tiers)}",
                )
            ]
        return []
    read = conditions.read_key(node)
    if read is None:
        return []
    field = "answer" if isinstance(node, AnswerTest) else "answered"
    target = bank.get(read)
    if target is None:
        return [
            BankProblem(
                kind,
                key,
                (*path, field),
                f"the condition reads question {read!r}, which is not in the bank",
                missing=read,
            )
        ]
    if not isinstance(node, AnswerTest):
        return []
    found = []
    if node.bounds() and target.kind is not AnswerKind.number:
        op = node.bounds()[0][0]
        found.append(
            BankProblem(
                kind,
                key,
                (*path, op),
                f"{op} compares numbers, but question {read!r} is answered "
                f"{target.kind.value.replace('_', '/')}",
            )
        )
    compared = [("eq", node.eq), ("ne", node.ne)] + [("in", v) for v in node.in_ or []]
    for op, value in compared:
        if value is None:
            continue
        try:
            normal = check_answer(target, value)
        except InvalidAnswer as exc:
            found.append(
                BankProblem(
                    kind,
                    key,
                    (*path, op),
                    f"question {read!r} can never be answered {value!r}: {exc.detail}",
                )
            )
            continue
        if normal != value:
            found.append(
                BankProblem(
                    kind,
                    key,
                    (*path, op),
                    f"answers to question {read!r} are stored as {normal!r}; "
                    f"compare with that, not {value!r}",
                )
            )
    return found


def _cycles(questions: Sequence[Question]) -> list[BankProblem]:
    """Each circle of question conditions once, reported on its first key."""
    graph = {q.key: sorted(conditions.answer_keys(q.condition)) for q in questions}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    stack: list[str] = []
    seen_cycles: set[frozenset[str]] = set()
    found: list[BankProblem] = []

    def visit(key: str) -> None:
        state[key] = 1
        stack.append(key)
        for nxt in graph.get(key, []):
            if nxt not in graph:
                continue  # an unknown key: reported on its own
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :]
                members = frozenset(cycle)
                if members not in seen_cycles:
                    seen_cycles.add(members)
                    start = min(cycle)
                    i = cycle.index(start)
                    ordered = [*cycle[i:], *cycle[:i], start]
                    found.append(
                        BankProblem(
                            "question",
                            start,
                            ("condition",),
                            "questions depend on each other's answers in a cycle "
                            f"({' -> '.join(ordered)}): none of them could ever be asked",
                            tuple(ordered[:-1]),
                        )
                    )
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[key] = 2

    for key in sorted(graph):
        if key not in state:
            visit(key)
    return found
