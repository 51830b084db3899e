"""An embed worker's bulk lanes, through the real hub: a backlog is spread over them, a lone
chunk runs on one, and the vectors are those of one lane."""

from __future__ import annotations

import json
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
    texts = [t for t in json.loads((DATA / "corpus.json").read_text())["texts"] if t.strip()]
    backlog = [f"{texts[i % len(texts)]} (copy {i})" for i in range(600)]  # ~5 chunks

    async def scenario(client):
        before = await stats(client)
        small = vectors(await embed(client, texts[:10]))  # one chunk: more than the query lane
        after_small = await stats(client)  # takes, fewer than a chunk holds
        big = vectors(await embed(client, backlog))
        return before, small, after_small, big, await stats(client)

    before, small, after_small, big, after_big = run(lanes, scenario)
    assert before["bulk_lanes"] == 2
    assert after_small["texts_embedded"] - before["texts_embedded"] == 10
    assert after_small["helper_texts_embedded"] == before["helper_texts_embedded"]
    assert after_big["texts_embedded"] - after_small["texts_embedded"] == 600
    helped = after_big["helper_texts_embedded"] - after_small["helper_texts_embedded"]
    assert 0 < helped < 600, helped  # both lanes took chunks of it
    # Every vector in its place, as one lane in this process computes it.
    model = Embedder.load(intra_op_threads=1)
    assert cosines(small, model.embed(texts[:10])).min() > 0.9999
    assert cosines(big, model.embed(backlog)).min() > 0.9999
