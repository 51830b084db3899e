"""The labelled retrieval evaluation's data (``bench/data/retrieval/``): load and validate.

``uv run python -m bench.retrieval_data`` checks every file and prints counts per category,
project and age band; it exits 1 when something is wrong (see the data README for the rules).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from store_worker.indexes.text_index import QUERY_STOPWORDS, tokens

DATA = Path(__file__).resolve().parent / "data" / "retrieval"
CATEGORIES = ("paraphrase", "identifier", "code", "error", "update", "temporal",
              "cross_project")
KINDS = ("reflection", "conversation")


@dataclass(frozen=True)
class Memory:
    key: str
    project: str
    kind: str
    age_days: float
    tags: tuple[str, ...]
    content: str


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    question: str
    answer: str
    negatives: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class Dataset:
    memories: list[Memory]
    questions: list[Question]

    def by_key(self) -> dict[str, Memory]:
        return {m.key: m for m in self.memories}


def _lines(path: Path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path.name}:{n}: not JSON: {exc}") from None
    return out


def load(data_dir: Path = DATA) -> Dataset:
    memories = [Memory(m["key"], m["project"], m["kind"], float(m["age_days"]),
                       tuple(m.get("tags", [])), m["content"])
                for path in sorted(data_dir.glob("memories-*.jsonl")) for m in _lines(path)]
    questions = [Question(q["id"], q["category"], q["question"], q["answer"],
                          tuple(q.get("negatives", [])))
                 for path in sorted(data_dir.glob("questions-*.jsonl")) for q in _lines(path)]
    return Dataset(memories, questions)


def content_words(text: str) -> set[str]:
    """Index terms of 3+ characters (the store's own tokeniser), without the stop words and
    question words a query drops."""
    return {t for t in tokens(text)
            if len(t) >= 3 and not t.isdigit() and t not in QUERY_STOPWORDS}


def problems(ds: Dataset) -> list[str]:
    out: list[str] = []
    keys = Counter(m.key for m in ds.memories)
    out += [f"memory key {k!r} used {n} times" for k, n in keys.items() if n > 1]
    mem = ds.by_key()
    contents = Counter((m.project, m.content.strip()) for m in ds.memories)
    out += [f"duplicate content in {p}: {c[:60]!r}" for (p, c), n in contents.items() if n > 1]
    for m in ds.memories:
        if m.kind not in KINDS:
            out.append(f"{m.key}: kind {m.kind!r}")
        if not 0.0 < m.age_days <= 366:
            out.append(f"{m.key}: age_days {m.age_days}")
        if not m.key.startswith(m.project + "/"):
            out.append(f"{m.key}: key does not start with its project")
    ids = Counter(q.id for q in ds.questions)
    out += [f"question id {k!r} used {n} times" for k, n in ids.items() if n > 1]
    for q in ds.questions:
        if q.category not in CATEGORIES:
            out.append(f"{q.id}: category {q.category!r}")
        if q.answer not in mem:
            out.append(f"{q.id}: answer {q.answer!r} is not a memory")
            continue
        if not q.negatives:
            out.append(f"{q.id}: no negatives")
        for neg in q.negatives:
            if neg not in mem:
                out.append(f"{q.id}: negative {neg!r} is not a memory")
            elif neg == q.answer:
                out.append(f"{q.id}: its answer is also a negative")
        answer = mem[q.answer]
        if q.category == "paraphrase":
            shared = content_words(q.question) & content_words(answer.content)
            if shared:
                out.append(f"{q.id}: paraphrase shares {sorted(shared)} with its answer")
        if q.category == "update":
            older = [mem[n] for n in q.negatives if n in mem]
            if not any(o.age_days > answer.age_days + 7 for o in older):
                out.append(f"{q.id}: update answer is not well newer than a negative")
        if q.category == "cross_project" and not any(
                mem[n].project != answer.project for n in q.negatives if n in mem):
            out.append(f"{q.id}: cross_project needs a negative in another project")
    return out


def summary(ds: Dataset) -> str:
    cats = Counter(q.category for q in ds.questions)
    projects = Counter(m.project for m in ds.memories)
    bands = Counter("<30d" if m.age_days < 30 else "30-120d" if m.age_days < 120 else ">=120d"
                    for m in ds.memories)
    mem = ds.by_key()
    answer_bands = Counter(
        "<30d" if mem[q.answer].age_days < 30 else "30-120d" if mem[q.answer].age_days < 120
        else ">=120d" for q in ds.questions if q.answer in mem)
    long = sum(1 for m in ds.memories if len(m.content.split()) >= 200)
    return "\n".join([
        (f"{len(ds.memories)} memories in {len(projects)} projects, {long} long (200+ words); "
         f"{len(ds.questions)} questions"),
        "questions by category: " + ", ".join(f"{c} {cats[c]}" for c in CATEGORIES),
        "memories by age: " + ", ".join(f"{b} {n}" for b, n in sorted(bands.items())),
        "answers by age: " + ", ".join(f"{b} {n}" for b, n in sorted(answer_bands.items())),
        "projects: " + ", ".join(f"{p} {n}" for p, n in sorted(projects.items())),
    ])


def main() -> int:
    ds = load()
    print(summary(ds))
    found = problems(ds)
    for line in found:
        print("PROBLEM:", line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
