"""What is never stored (``shared.privacy``): ``<private>`` parts, configured lines, projects
that opted out; in linear time whatever the text; applied by the store to every new memory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.config import load_config
from shared.errors import ConfigError
from shared.privacy import IGNORE_FILE, Privacy, ignored, strip_private_tags
from store_worker.memory_store import MemoryStore
from store_worker.records import InvalidInput


@pytest.mark.parametrize(("text", "kept"), [
    ("no tags here", "no tags here"),
    ("a <private>b</private> c", "a  c"),
    ("a <PRIVATE>b</Private> c <private>d</private>e", "a  c e"),
    ("<private>one\nline two</private>after", "after"),
    ("before <private>never closed\nstill hidden", "before "),
    ("</private> a stray closing tag stays", "</private> a stray closing tag stays"),
    ("<private>a <private>nested</private> b</private>", " b</private>"),
    ("<privat>not a tag</privat>", "<privat>not a tag</privat>"),
])
def test_private_tags(text, kept):
    assert strip_private_tags(text) == kept


def test_configured_lines_are_dropped_whole_and_case_insensitively():
    privacy = Privacy.from_patterns(["*internal only*", "password: *", "ticket-[0-9]*"])
    text = ("keep 1\nThis is INTERNAL ONLY, really\r\npassword: hunter2\nticket-42 is done\n"
            "a password: in the middle stays\nkeep 2")
    assert privacy.filter(text) == "keep 1\na password: in the middle stays\nkeep 2"
    assert Privacy.from_patterns([]).filter(text) == text


def test_hostile_text_is_filtered_in_linear_time():
    privacy = Privacy.from_patterns(["*a*a*a*a*a*a*b", "*<private>*", "x*y*z*"])
    cases = ["<private>" * 11_000, "a" * 100_000, ("a" * 99 + "\n") * 1_000,
             "<private></private>" * 5_000, "x" + "y" * 99_998 + "q"]
    for text in cases:
        started = time.perf_counter()
        privacy.filter(text)
        assert time.perf_counter() - started < 0.5, text[:20]


def test_the_settings(tmp_path):
    (tmp_path / "config.toml").write_text('private_patterns = ["*secret*", "*draft*"]\n')
    cfg = load_config({"SESSIOND_HOME": str(tmp_path)})
    assert cfg.private_patterns == "*secret*\n*draft*"
    assert Privacy.from_config(cfg).filter("a\nmy secret\nb\nthe draft\n") == "a\nb\n"
    with pytest.raises(ConfigError, match="at most 100"):
        load_config({"SESSIOND_HOME": str(tmp_path),
                     "SESSIOND_PRIVATE_PATTERNS": "\n".join(f"p{i}" for i in range(101))})
    with pytest.raises(ConfigError, match="hook_context_tokens"):
        load_config({"SESSIOND_HOME": str(tmp_path), "SESSIOND_HOOK_CONTEXT_TOKENS": "-1"})


def test_opting_a_project_out(tmp_path):
    cfg = load_config({"SESSIOND_HOME": str(tmp_path / "home"),
                       "SESSIOND_CAPTURE_EXCLUDE": str(tmp_path / "clients")})
    repo = tmp_path / "work" / "repo"
    (repo / "pkg").mkdir(parents=True)
    assert ignored(cfg, repo) is None
    (repo / IGNORE_FILE).write_text("")
    assert IGNORE_FILE in ignored(cfg, repo)
    assert IGNORE_FILE in ignored(cfg, repo / "pkg")  # a sub-directory of an opted-out repo
    assert "capture_exclude" in ignored(cfg, tmp_path / "clients" / "acme")
    assert ignored(cfg, tmp_path / "clients-other") is None


def test_the_store_drops_private_parts_of_every_new_memory(tmp_path: Path):
    privacy = Privacy.from_patterns(["*INTERNAL*"])
    with MemoryStore(tmp_path / "m.duckdb", privacy=privacy) as store:
        one = store.add("note", "keep <private>secret</private>this\nINTERNAL: no", "p")
        many = store.add_many([{"kind": "note", "content": "x <private>y</private>z",
                                "project": "p"}])
        assert [m["content"] for m in store.get([one.id, many[0].id])] == ["keep this", "x z"]
        with pytest.raises(InvalidInput, match="only private parts"):
            store.add("note", "<private>all</private>", "p")
        with pytest.raises(InvalidInput, match="item 1: content held only private parts"):
            store.add_many([{"kind": "note", "content": "fine", "project": "p"},
                            {"kind": "note", "content": "INTERNAL a\nINTERNAL b", "project": "p"}])
        assert store.count == 2  # the refused batch wrote nothing
