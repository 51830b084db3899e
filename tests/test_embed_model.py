"""The in-process embedding engine against reference embeddings of the original model.

Real model, no mocks. ``tests/data/minilm`` holds texts and sentence-transformers (PyTorch,
float32, max_seq_length 256) embeddings of them; see its README.md. These tests run the int8
file as it is (``fast=False``); ``tests/test_fast_model.py`` holds the same bars for the
faster MatMulNBits build that ``Embedder.load`` uses by default.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from embed_worker.batching import plan_batches
from embed_worker.model import (
    DIM,
    MAX_TOKENS,
    MODEL_ID,
    Embedder,
    ModelLoadError,
    default_model_path,
    default_tokenizer_path,
)

DATA = Path(__file__).resolve().parent / "data" / "minilm"


@pytest.fixture(scope="module")
def emb() -> Embedder:
    return Embedder.load(intra_op_threads=1, fast=False)


@pytest.fixture(scope="module")
def corpus() -> dict:
    return json.loads((DATA / "corpus.json").read_text())


@pytest.fixture(scope="module")
def corpus_vectors(emb: Embedder, corpus: dict) -> np.ndarray:
    return emb.embed(corpus["texts"])


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_identity(emb: Embedder) -> None:
    assert emb.dim == DIM == 384
    assert emb.model_id == MODEL_ID == "all-MiniLM-L6-v2-int8"
    assert emb.model_path == default_model_path()


def test_corpus_matches_reference(corpus_vectors: np.ndarray) -> None:
    ref = np.load(DATA / "ref_st.npy")
    assert corpus_vectors.shape == ref.shape == (202, DIM)
    cos = row_cosines(corpus_vectors, ref)
    assert cos.mean() >= 0.999, cos.mean()
    assert cos.min() >= 0.99, cos.min()


def test_queries_match_reference(emb: Embedder) -> None:
    queries = json.loads((DATA / "queries.json").read_text())
    vectors = emb.embed(queries)
    cos = row_cosines(vectors, np.load(DATA / "ref_q.npy"))
    assert cos.mean() >= 0.999, cos.mean()
    assert cos.min() >= 0.99, cos.min()


def test_output_is_unit_float32_in_input_order(emb: Embedder, corpus: dict,
                                               corpus_vectors: np.ndarray) -> None:
    assert corpus_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(corpus_vectors, axis=1), 1.0, atol=1e-5)
    # A shuffled mix of short and long texts comes back in the order it was given.
    order = list(range(1, len(corpus["texts"]), 4))
    random.Random(7).shuffle(order)
    shuffled = emb.embed([corpus["texts"][i] for i in order])
    assert shuffled.shape == (len(order), DIM) and shuffled.dtype == np.float32
    assert row_cosines(shuffled, corpus_vectors[order]).min() >= 0.9999


def test_batched_equals_one_at_a_time(emb: Embedder, corpus: dict,
                                      corpus_vectors: np.ndarray) -> None:
    # Every third text (all kinds and lengths) alone vs inside the whole-corpus run.
    rows = list(range(0, len(corpus["texts"]), 3))
    singles = np.concatenate([emb.embed_batch([corpus["texts"][i]]) for i in rows])
    assert row_cosines(singles, corpus_vectors[rows]).min() >= 0.9999
    assert np.abs(singles - corpus_vectors[rows]).max() < 1e-3
    # One ONNX call over a mixed batch (heavy padding) still gives the same vectors.
    mixed = emb.embed_batch(corpus["texts"][::10])
    assert row_cosines(mixed, corpus_vectors[::10]).min() >= 0.9999


def test_long_texts_are_truncated_and_match_reference(emb: Embedder, corpus: dict,
                                                      corpus_vectors: np.ndarray) -> None:
    lengths = emb.token_lengths(corpus["texts"])
    assert max(lengths) == MAX_TOKENS
    long_rows = [i for i, n in enumerate(lengths) if n == MAX_TOKENS]
    assert len(long_rows) >= 25  # the README says 31 texts exceed 256 tokens
    ref = np.load(DATA / "ref_st.npy")
    assert row_cosines(corpus_vectors[long_rows], ref[long_rows]).min() >= 0.99

    huge = " ".join(["supercalifragilistic token overflow"] * 5000)
    out = emb.embed([huge, "short one"])
    assert out.shape == (2, DIM)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert emb.token_lengths([huge]) == [MAX_TOKENS]


def test_odd_inputs_do_not_crash(emb: Embedder) -> None:
    out = emb.embed(["", " ", "\x00\ufffd", "😀" * 50, "a"])
    assert out.shape == (5, DIM)
    assert np.isfinite(out).all()


def test_empty_list_is_rejected(emb: Embedder) -> None:
    with pytest.raises(ValueError):
        emb.embed([])
    with pytest.raises(ValueError):
        emb.embed_batch([])


def test_corrupted_tokenizer_raises(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    shutil.copyfile(default_tokenizer_path(), bad)
    data = bytearray(bad.read_bytes())
    data[1000] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError) as info:
        Embedder.load(tokenizer_path=bad)
    message = str(info.value)
    assert str(bad) in message and "sha256" in message
    assert "be50c3628f2bf5bb" in message  # the expected hash is named


def test_missing_files_raise(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(ModelLoadError, match="tokenizer file not found") as info:
        Embedder.load(tokenizer_path=missing)
    assert str(missing) in str(info.value)
    with pytest.raises(ModelLoadError, match="model file not found"):
        Embedder.load(model_path=tmp_path / "model.onnx")


def test_corrupted_model_raises(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    shutil.copyfile(default_model_path(), bad)
    with open(bad, "r+b") as f:
        f.seek(5_000_000)
        byte = f.read(1)
        f.seek(5_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelLoadError, match="model file .* wrong sha256"):
        Embedder.load(model_path=bad)


# -- batch planning (pure) ------------------------------------------------------------

def check_plan(lengths: list[int], budget: int, max_batch: int) -> list[list[int]]:
    plan = plan_batches(lengths, budget, max_batch)
    flat = [i for batch in plan for i in batch]
    assert sorted(flat) == list(range(len(lengths)))  # every index exactly once
    assert [lengths[i] for i in flat] == sorted(lengths)  # length-sorted throughout
    for batch in plan:
        assert 1 <= len(batch) <= max_batch
        if len(batch) > 1:
            assert len(batch) * max(lengths[i] for i in batch) <= budget
    return plan


def test_plan_batches_properties() -> None:
    rng = random.Random(3)
    for _ in range(200):
        lengths = [rng.choice([2, 5, 12, 13, 60, 64, 130, 256]) + rng.randint(0, 3)
                   for _ in range(rng.randint(1, 300))]
        check_plan(lengths, rng.choice([64, 256, 1024, 4096]), rng.choice([1, 8, 32]))
    assert plan_batches([]) == []


def test_plan_batches_shapes() -> None:
    assert [len(b) for b in check_plan([12] * 100, 512, 32)] == [32, 32, 32, 4]
    assert {len(b) for b in check_plan([64] * 64, 512, 32)} == {8}
    assert {len(b) for b in check_plan([256] * 10, 512, 32)} == {2}
    assert {len(b) for b in check_plan([256] * 10, 200, 32)} == {1}  # over budget: alone
    # Mixed input: short texts share large batches, long ones small; ties keep input order.
    lengths = [256, 12, 60, 12, 256, 60]
    assert check_plan(lengths, 1024, 32) == [[1, 3, 2, 5], [0, 4]]
    with pytest.raises(ValueError):
        plan_batches([1], 0, 1)


def test_bulk_work_leaves_no_memory_behind() -> None:
    """Lean at rest: after a bulk batch and ``heap.trim`` (what the embed worker does when its
    bulk lane goes idle) the process is back near its size before. With onnxruntime's CPU
    arena (the old default) it kept ~50 MB of the batch's peak for good."""
    import psutil

    from bench.embed_raw import medium_texts
    from shared import heap

    fresh = Embedder.load(intra_op_threads=1, fast=False)
    proc = psutil.Process()
    fresh.embed(["warm up"])
    heap.trim()
    before = proc.memory_info().rss
    fresh.embed(medium_texts(200, seed=3))
    heap.trim()
    grown_mb = (proc.memory_info().rss - before) / 2**20
    assert grown_mb < 20, f"{grown_mb:.1f} MB kept after the batch"
