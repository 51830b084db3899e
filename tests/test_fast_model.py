"""The MatMulNBits build of the model (``embed_worker.fast_model``) and how ``Embedder.load`` uses it.

Real model, real files, no mocks; every cache dir is a temp dir. The build takes ~0.3 s, so
tests that need a fresh one make their own.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest

from embed_worker import fast_model
from embed_worker.fast_model import (
    FAST_MODEL_FILE,
    FAST_MODEL_ID,
    FAST_MODEL_SHA256,
    FastModelError,
)
from embed_worker.model import MODEL_ID, Embedder, default_model_path, sha256_file
from shared.config import load_config, to_environ

DATA = Path(__file__).resolve().parent / "data" / "minilm"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def fast(cache_dir: Path) -> Embedder:
    return Embedder.load(intra_op_threads=1, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def original() -> Embedder:
    return Embedder.load(intra_op_threads=1, fast=False)


@pytest.fixture(scope="module")
def corpus_texts() -> list[str]:
    return json.loads((DATA / "corpus.json").read_text())["texts"]


@pytest.fixture(scope="module")
def fast_corpus(fast: Embedder, corpus_texts: list[str]) -> np.ndarray:
    return fast.embed(corpus_texts)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "fast model is not used" in r.getMessage()]


# -- the build ------------------------------------------------------------------------

def test_build_is_deterministic(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "fast.onnx"
    fast_model.build(default_model_path(), dest)
    assert sha256_file(dest) == FAST_MODEL_SHA256
    assert [p.name for p in dest.parent.iterdir()] == ["fast.onnx"]  # no temp file left
    graph = onnx.load(str(dest)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("MatMulNBits") == fast_model.EXPECTED_MATMULS == 36
    # The word and position tables are gathered as int8 rows, never folded to float32: no
    # Gather reads a Mul, and no Cast reads an initializer.
    producer = {out: n for n in graph.node for out in n.output}
    inits = {t.name for t in graph.initializer}
    assert not [n.name for n in graph.node
                if n.op_type == "Gather" and producer.get(n.input[0], n).op_type == "Mul"]
    assert not [n.name for n in graph.node if n.op_type == "Cast" and n.input[0] in inits]
    tables = [n.input[0] for n in graph.node if n.op_type == "Gather" and n.input[0] in inits
              and onnx.TensorProto.INT8 == next(t.data_type for t in graph.initializer
                                                 if t.name == n.input[0])]
    assert sorted(tables) == ["inner.embeddings.position_embeddings.weight_q",
                              "inner.embeddings.word_embeddings.weight_q"]


def test_build_refuses_a_different_result(tmp_path: Path) -> None:
    # A source that differs only in a name still parses and rewrites, but its output does not
    # have the expected sha256: nothing may be written.
    source = onnx.load(str(default_model_path()))
    source.graph.name += "-changed"
    changed = tmp_path / "changed.onnx"
    onnx.save(source, str(changed))
    dest = tmp_path / "cache" / "fast.onnx"
    with pytest.raises(FastModelError, match="wrong sha256"):
        fast_model.build(changed, dest)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


# -- vectors --------------------------------------------------------------------------

def test_identity(fast: Embedder, original: Embedder, cache_dir: Path) -> None:
    assert fast.model_id == FAST_MODEL_ID == "all-MiniLM-L6-v2-int8-nbits16"
    assert fast.model_path == cache_dir / FAST_MODEL_FILE
    assert FAST_MODEL_SHA256[:16] in FAST_MODEL_FILE
    assert original.model_id == MODEL_ID and original.model_path == default_model_path()


def test_queries_match_reference_and_original(fast: Embedder, original: Embedder) -> None:
    queries = json.loads((DATA / "queries.json").read_text())
    vectors = fast.embed(queries)
    assert vectors.dtype == np.float32 and vectors.shape == (len(queries), fast.dim)
    cos = row_cosines(vectors, np.load(DATA / "ref_q.npy"))
    assert cos.mean() >= 0.999, cos.mean()
    assert cos.min() >= 0.99, cos.min()
    assert row_cosines(vectors, original.embed(queries)).min() >= 0.999


def test_corpus_matches_reference_and_original(original: Embedder, corpus_texts: list[str],
                                               fast_corpus: np.ndarray) -> None:
    cos = row_cosines(fast_corpus, np.load(DATA / "ref_st.npy"))
    assert cos.mean() >= 0.999, cos.mean()
    assert cos.min() >= 0.99, cos.min()
    # Against the int8 file on every fourth text (all kinds and lengths): measured over the
    # whole corpus, mean 0.99988, min 0.9989 (a 256-token text).
    rows = list(range(0, len(corpus_texts), 4))
    to_original = row_cosines(fast_corpus[rows], original.embed([corpus_texts[i] for i in rows]))
    assert to_original.mean() >= 0.999, to_original.mean()
    assert to_original.min() >= 0.995, to_original.min()


def test_gathered_tables_give_the_vectors_of_tables_folded_at_load(
        fast: Embedder, corpus_texts: list[str], fast_corpus: np.ndarray,
        tmp_path: Path) -> None:
    # The build before gather_quantized: the MatMuls rewritten, the tables left for
    # onnxruntime to fold to float32 at load. Dequantising only the gathered rows does the
    # same multiplications on the same values, so every vector is equal bit for bit.
    import onnxruntime as ort

    from embed_worker.model import _open_session

    folded = onnx.load(str(default_model_path()))
    assert fast_model.rewrite(folded) == fast_model.EXPECTED_MATMULS
    path = tmp_path / "folded.onnx"
    onnx.save(folded, str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    before = Embedder(_open_session(path, options), fast._tokenizer, 1)
    assert np.array_equal(before.embed(corpus_texts), fast_corpus)


def test_batched_equals_one_at_a_time(fast: Embedder, corpus_texts: list[str],
                                      fast_corpus: np.ndarray) -> None:
    # Activations are quantised per row at run time, so a text's neighbours in a batch (and
    # their padding) must not change its vector.
    rows = list(range(0, len(corpus_texts), 8))
    alone = np.concatenate([fast.embed_batch([corpus_texts[i]]) for i in rows])
    assert row_cosines(alone, fast_corpus[rows]).min() >= 0.9999
    mixed = fast.embed_batch(corpus_texts[::16])  # one call, heavy padding
    assert row_cosines(mixed, fast_corpus[::16]).min() >= 0.9999


# -- the cache ------------------------------------------------------------------------

def test_second_load_reuses_the_cache(tmp_path: Path) -> None:
    first = Embedder.load(cache_dir=tmp_path)
    built = first.model_path.stat()
    second = Embedder.load(cache_dir=tmp_path)
    again = second.model_path.stat()
    # A build writes a new file and renames it over the old one: a new inode every time.
    assert (again.st_ino, again.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)
    assert second.model_id == FAST_MODEL_ID
    assert [p.name for p in tmp_path.iterdir()] == [FAST_MODEL_FILE]


def test_corrupted_cache_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = Embedder.load(cache_dir=tmp_path).model_path
    with open(path, "r+b") as f:
        f.seek(5_000_000)
        byte = f.read(1)
        f.seek(5_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    corrupted = path.stat().st_ino
    with caplog.at_level(logging.WARNING, logger="sessiond.embed"):
        emb = Embedder.load(cache_dir=tmp_path)
    assert emb.model_id == FAST_MODEL_ID and emb.model_path == path
    assert path.stat().st_ino != corrupted
    assert sha256_file(path) == FAST_MODEL_SHA256
    assert any("wrong sha256" in r.getMessage() and "rebuilding" in r.getMessage()
               for r in caplog.records)
    assert not fallback_warnings(caplog)


def test_concurrent_builders_agree(tmp_path: Path) -> None:
    # Embed workers start together: each may build; the renames leave one good file.
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(fast_model.fast_model_path, default_model_path(), tmp_path)
                   for _ in range(3)]
        results = [f.result(timeout=30) for f in futures]
    assert results == [tmp_path / FAST_MODEL_FILE] * 3
    assert sha256_file(tmp_path / FAST_MODEL_FILE) == FAST_MODEL_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [FAST_MODEL_FILE]


# -- turning it off, falling back ---------------------------------------------------------

def test_fast_off_loads_the_original(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    emb = Embedder.load(fast=False, cache_dir=cache)
    assert emb.model_id == MODEL_ID and emb.model_path == default_model_path()
    assert not cache.exists()  # not even created


def test_unwritable_cache_falls_back_quickly(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = blocker / "cache"  # cannot be created, even by root
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="sessiond.embed"):
        emb = Embedder.load(cache_dir=cache)
    assert time.monotonic() - start < 5
    assert emb.model_id == MODEL_ID and emb.model_path == default_model_path()
    (warning,) = fallback_warnings(caplog)
    assert str(cache) in warning and str(default_model_path()) in warning
    assert emb.embed(["still works"]).shape == (1, emb.dim)


def test_cache_file_that_cannot_be_replaced_falls_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A directory where the model file should be: it is not a usable model, and the build
    # cannot be renamed over it (read-only permissions would not stop root).
    cache = tmp_path / "cache"
    (cache / FAST_MODEL_FILE).mkdir(parents=True)
    (cache / FAST_MODEL_FILE / "x").write_text("a directory where the model should be")
    with caplog.at_level(logging.WARNING, logger="sessiond.embed"):
        emb = Embedder.load(cache_dir=cache)
    assert emb.model_id == MODEL_ID
    (warning,) = fallback_warnings(caplog)
    assert "cannot write the fast model" in warning
    assert [p.name for p in cache.iterdir()] == [FAST_MODEL_FILE]  # temp file cleaned up


# -- settings -----------------------------------------------------------------------------

def test_settings(tmp_path: Path) -> None:
    env = {"SESSIOND_HOME": str(tmp_path)}
    cfg = load_config(env, create_dirs=False)
    assert cfg.embed_fast_model is True and cfg.model_cache_dir == ""
    cfg = load_config({**env, "SESSIOND_EMBED_FAST_MODEL": "false",
                       "SESSIOND_MODEL_CACHE_DIR": str(tmp_path / "c")}, create_dirs=False)
    assert cfg.embed_fast_model is False and cfg.model_cache_dir == str(tmp_path / "c")
    # What a child process gets back from the parent's config.
    assert load_config(to_environ(cfg), create_dirs=False) == cfg


def test_default_cache_dir_is_the_user_cache() -> None:
    path = fast_model.default_cache_dir()
    assert path.name == "sessiond" and "cache" in str(path).lower()

