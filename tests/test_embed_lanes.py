"""An embed worker's bulk lanes, through the real hub: a backlog is spread over them, a lone
chunk runs on one, and the vectors are those of one lane."""

from __future__ import annotations

import asyncio
import json
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import private_stack
from test_embed_pool import cosines, embed, run, vectors

from embed_worker.model import Embedder
from shared import protocol as p
from shared.config import load_config

DATA = Path(__file__).parent / "data" / "minilm"


@pytest.fixture(scope="module")
def lanes():
    """One embed worker (the default) with two bulk lanes."""
    with private_stack(SESSIOND_EMBED_BULK_LANES="2") as (env, _):
        yield load_config(env)


async def stats(client) -> dict:
    pong = await client.request(p.SERVICE_EMBED, p.Ping(), retry_unavailable=True)
    return pong.detail


def test_a_lone_chunk_runs_on_one_lane_and_a_backlog_on_both(lanes):
    """The second lane joins only a backlog of ``embed_lanes_min_backlog`` (512) texts or more:
    those sent, or fewer with the sender's word that more wait (``Embed.backlog``); once it has
    joined, it stays until the backlog is done."""
    texts = [t for t in json.loads((DATA / "corpus.json").read_text())["texts"] if t.strip()]
    backlog = [f"{texts[i % len(texts)]} (copy {i})" for i in range(600)]  # ~5 chunks
    burst = backlog[:300]  # ~3 chunks, below the bar

    async def scenario(client):
        seen = [await stats(client)]
        small = vectors(await embed(client, texts[:10]))  # one chunk: more than the query lane
        seen.append(await stats(client))  # takes, fewer than a chunk holds
        alone = vectors(await client.request(p.SERVICE_EMBED, p.Embed(texts=burst)))
        seen.append(await stats(client))
        told = await client.request(p.SERVICE_EMBED, p.Embed(texts=burst, backlog=1000))
        seen.append(await stats(client))
        big = vectors(await embed(client, backlog))
        seen.append(await stats(client))
        return seen, small, alone, vectors(told), big

    seen, small, alone, told, big = run(lanes, scenario)
    embedded = [b["texts_embedded"] - a["texts_embedded"] for a, b in pairwise(seen)]
    helped = [b["helper_texts_embedded"] - a["helper_texts_embedded"] for a, b in pairwise(seen)]
    assert seen[0]["bulk_lanes"] == 2
    assert embedded == [10, 300, 300, 600]
    assert helped[:2] == [0, 0]  # a lone chunk; a burst of 300 with nothing more waiting
    assert 0 < helped[2] < 300, helped  # the same burst with 1,000 more waiting
    # 600 texts in one request: both lanes take part to the end (about half each), not only
    # while more than 512 are left (~120 for the helper)
    assert 200 <= helped[3] < 600, helped
    assert seen[-1]["backlog_hint"] == 0  # the last document request said nothing waits
    # Every vector in its place, as one lane in this process computes it.
    model = Embedder.load(intra_op_threads=1)
    assert cosines(small, model.embed(texts[:10])).min() > 0.9999
    expected = model.embed(burst)
    assert cosines(alone, expected).min() > 0.9999
    assert cosines(told, expected).min() > 0.9999
    assert cosines(big, model.embed(backlog)).min() > 0.9999


def test_an_imports_backfill_tells_the_worker_its_size_and_uses_both_lanes(lanes):
    """The store's filler sends 128 texts at a time, two requests in flight: only its word on
    how many more wait (``Embed.backlog``) lets the worker see a backlog worth a second lane."""
    texts = [t for t in json.loads((DATA / "corpus.json").read_text())["texts"] if t.strip()]
    items = [p.Remember(kind="conversation", content=f"{texts[i % len(texts)]} (import {i})",
                        project="imported") for i in range(700)]

    async def scenario(client):
        before = await stats(client)
        await client.request(p.SERVICE_STORE, p.RememberMany(items=items))
        for _ in range(600):
            reply = await client.request(p.SERVICE_STORE, p.StoreStats())
            if not reply.data["pending_embeddings"]:
                break
            await asyncio.sleep(0.1)
        return before, reply.data["pending_embeddings"], await stats(client)

    before, pending, after = run(lanes, scenario)
    assert pending == 0
    assert after["texts_embedded"] - before["texts_embedded"] >= 700
    assert after["helper_texts_embedded"] > before["helper_texts_embedded"]
