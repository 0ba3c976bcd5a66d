"""The recording format of the Transformer Mock: what a model produced, request by request.

Owns the on-disk format (version 1), its writer and its reader. A recording is a directory:

    manifest.json        {"format": "chatstream-recording", "version": 1,
                          "created": ISO-8601 UTC time, "model": the model's name or path,
                          "vocab_size": V, "eos_token_ids": [...], "max_model_len": the engine's,
                          "top_k_logits": 20, "tokenizer": "tokenizer" (null when none was given)}
    tokenizer/           the tokenizer's own files (`save_pretrained`), so replay needs no model
    requests/000000.safetensors, 000001.safetensors, ...
                         one file per finished (or aborted) request, numbered in the order the
                         requests reached the engine. Tensors, S = tokens generated, K = top-k:
                           output_token_ids [S]    int64    the tokens the engine produced
                           top_ids          [S, K] int64    the K best tokens at each step
                           top_logits       [S, K] float32  their raw model logits (before
                                                            penalties and temperature)
                         and metadata key "chatstream.request", a JSON object with
                         request_id, prompt_token_ids, sampling_params (every SamplingParams
                         field) and finish_reason ("stop", "length" or "abort").

Why the sampled tokens and only the top 20 logits: replay reproduces the *sampled token*, which
is stored exactly, so it does not depend on the RNG, the batch a request ran in, or the hardware
(the original stored whole logits rows and re-sampled them, which breaks as soon as any of
those change). The top-K logits keep the model's preferences for inspection and for divergence
messages at a fraction of the size: a full row is V floats, 49k for SmolLM2.

Every file is written atomically (temp name in the same directory, fsync, rename) and the
manifest is written last, so a crash never leaves a half-written file that a reader would take
for data: readers skip temp names, and a directory without a manifest is not a recording.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatstream.cache_dir import cache_dir
from chatstream.mock.atomic_files import write_bytes_atomic, write_dir_atomic

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedTokenizerBase

FORMAT_NAME = "chatstream-recording"
FORMAT_VERSION = 1
TOP_K_LOGITS = 20
MANIFEST_NAME = "manifest.json"
REQUESTS_DIR = "requests"
TOKENIZER_DIR = "tokenizer"
METADATA_KEY = "chatstream.request"
_REQUEST_FILE = re.compile(r"^(\d{6,})\.safetensors$")


class RecordingError(ValueError):
    """A directory is not a recording this version can read, or one of its files is damaged."""


@dataclass(frozen=True)
class RecordingManifest:
    """The recording-wide facts: which model, and the engine limits it ran with."""

    model: str
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    max_model_len: int
    created: str
    top_k_logits: int = TOP_K_LOGITS
    tokenizer: str | None = TOKENIZER_DIR

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "created": self.created, "model": self.model,
                "vocab_size": self.vocab_size, "eos_token_ids": list(self.eos_token_ids),
                "max_model_len": self.max_model_len, "top_k_logits": self.top_k_logits, "tokenizer": self.tokenizer}

    @classmethod
    def from_json(cls, data: Any, where: Path) -> "RecordingManifest":
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise RecordingError(f"{where} is not a ChatStream recording (format {found!r}, expected {FORMAT_NAME!r})")
        if data.get("version") != FORMAT_VERSION:
            raise RecordingError(f"{where} is a recording of format version {data.get('version')!r}; this ChatStream "
                                 f"reads version {FORMAT_VERSION} only")
        try:
            return cls(model=str(data["model"]), vocab_size=int(data["vocab_size"]),
                       eos_token_ids=tuple(int(t) for t in data["eos_token_ids"]),
                       max_model_len=int(data["max_model_len"]), created=str(data["created"]),
                       top_k_logits=int(data["top_k_logits"]), tokenizer=data.get("tokenizer"))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{where}: incomplete manifest ({exc!r})") from exc


@dataclass(frozen=True, eq=False)
class RecordedRequest:
    """One request as recorded: its prompt, what the engine produced, and the model's top-K per step."""

    seq: int
    request_id: str
    prompt_token_ids: tuple[int, ...]
    output_token_ids: tuple[int, ...]
    top_ids: "np.ndarray"  # [S, K] int64
    top_logits: "np.ndarray"  # [S, K] float32
    sampling_params: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None

    @property
    def token_chain(self) -> tuple[int, ...]:
        """The prompt followed by the outputs: the path replay walks."""
        return self.prompt_token_ids + self.output_token_ids

    @property
    def file_name(self) -> str:
        return f"{self.seq:06d}.safetensors"


def recordings_root() -> Path:
    """Where recordings go unless told otherwise: `cache_dir()/recordings`."""
    return cache_dir() / "recordings"


def find_recording(dirname: str | os.PathLike[str]) -> Path:
    """The recording `dirname` names: a path (absolute, or relative to the working directory) to a
    recording, else the recording of that name under `recordings_root()`, where probe mode records
    (so `MockTransformer("20240101-120000")` finds what `probe_mode_enabled=True` wrote, as in the
    original). A `RecordingError` names both places when neither holds one."""
    path = Path(dirname)
    if is_recording_dir(path):
        return path
    stored = recordings_root() / path
    if not path.is_absolute() and is_recording_dir(stored):
        return stored
    if path.is_dir():
        return path  # a directory that is not a recording: Recording.load says what is wrong with it
    raise RecordingError(f"no recording named {os.fspath(dirname)!r}: neither {path.resolve()} nor {stored} is one")


def default_recording_dir() -> Path:
    """A new `recordings_root()/<YYYYmmdd-HHMMSS>` (then `-2`, `-3`, ... if taken).

    The directory is created here, so two processes starting in the same second get two."""
    parent = recordings_root()
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        path = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RecordingError(f"no free recording directory name for {stamp} under {parent}")


def is_recording_dir(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a directory whose manifest names this format (any version)."""
    manifest = Path(path) / MANIFEST_NAME
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def _read_manifest(path: Path) -> RecordingManifest:
    if not path.is_dir():
        raise RecordingError(f"no recording at {path}: the directory does not exist")
    manifest_path = path / MANIFEST_NAME
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordingError(f"{path} is not a ChatStream recording: it has no {MANIFEST_NAME}") from None
    except ValueError as exc:
        raise RecordingError(f"{manifest_path} is not valid JSON: {exc}") from exc
    return RecordingManifest.from_json(data, path)


def _request_files(path: Path) -> list[tuple[int, Path]]:
    folder = path / REQUESTS_DIR
    if not folder.is_dir():
        return []
    # Temp files of interrupted writes (".000003.safetensors.tmp-...") do not match the pattern.
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _REQUEST_FILE.match(p.name))]
    return sorted(found)


class RecordingWriter:
    """Creates (or continues) a recording directory and writes one file per finished request.

    An existing recording is continued: new files are numbered after its last one, and its
    manifest and tokenizer stay as they are (its vocab_size must match).
    """

    def __init__(self, dirname: str | os.PathLike[str], tokenizer: "PreTrainedTokenizerBase | None", model_name: str,
                 vocab_size: int, eos_token_ids: Iterable[int], max_model_len: int) -> None:
        self.path = Path(dirname)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / REQUESTS_DIR).mkdir(exist_ok=True)
        if (self.path / MANIFEST_NAME).exists():
            self.manifest = _read_manifest(self.path)
            if self.manifest.vocab_size != vocab_size:
                raise RecordingError(f"{self.path} holds a recording of a model with vocab_size="
                                     f"{self.manifest.vocab_size}, not {vocab_size}; record into a new directory")
        else:
            self.manifest = RecordingManifest(
                model=model_name, vocab_size=int(vocab_size),
                eos_token_ids=tuple(sorted(int(t) for t in eos_token_ids)), max_model_len=int(max_model_len),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                tokenizer=TOKENIZER_DIR if tokenizer is not None else None)
            if tokenizer is not None and not (self.path / TOKENIZER_DIR).exists():
                write_dir_atomic(self.path / TOKENIZER_DIR, lambda tmp: tokenizer.save_pretrained(str(tmp)))
            # Last: a directory with a manifest is complete.
            text = json.dumps(self.manifest.to_json(), indent=2, ensure_ascii=False) + "\n"
            write_bytes_atomic(self.path / MANIFEST_NAME, text.encode("utf-8"))
        files = _request_files(self.path)
        self._next_seq = files[-1][0] + 1 if files else 0

    @property
    def top_k(self) -> int:
        return self.manifest.top_k_logits

    def reserve_seq(self) -> int:
        """The number of the next request's file; taken when the request arrives, so files keep arrival order."""
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def write_request(self, request: RecordedRequest) -> Path:
        import numpy as np
        from safetensors.numpy import save

        meta = {"request_id": request.request_id, "prompt_token_ids": list(request.prompt_token_ids),
                "sampling_params": request.sampling_params, "finish_reason": request.finish_reason}
        tensors = {
            "output_token_ids": np.asarray(request.output_token_ids, dtype=np.int64).reshape(-1),
            "top_ids": np.ascontiguousarray(request.top_ids, dtype=np.int64),
            "top_logits": np.ascontiguousarray(request.top_logits, dtype=np.float32),
        }
        data = save(tensors, metadata={METADATA_KEY: json.dumps(meta, ensure_ascii=False)})
        target = self.path / REQUESTS_DIR / request.file_name
        write_bytes_atomic(target, data)
        return target


def _read_request(seq: int, path: Path) -> RecordedRequest:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            meta = json.loads((f.metadata() or {})[METADATA_KEY])
            tensors = {name: f.get_tensor(name) for name in ("output_token_ids", "top_ids", "top_logits")}
        return RecordedRequest(
            seq=seq, request_id=str(meta["request_id"]),
            prompt_token_ids=tuple(int(t) for t in meta["prompt_token_ids"]),
            output_token_ids=tuple(int(t) for t in tensors["output_token_ids"].tolist()),
            top_ids=tensors["top_ids"], top_logits=tensors["top_logits"],
            sampling_params=dict(meta.get("sampling_params") or {}), finish_reason=meta.get("finish_reason"))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types; name the file whatever went wrong
        raise RecordingError(f"{path} is not a readable recorded request: {exc!r}") from exc


@dataclass(frozen=True)
class Recording:
    """A whole recording in memory: its manifest and every recorded request, in arrival order."""

    path: Path
    manifest: RecordingManifest
    requests: tuple[RecordedRequest, ...]

    @classmethod
    def load(cls, dirname: str | os.PathLike[str]) -> "Recording":
        path = Path(dirname)
        manifest = _read_manifest(path)
        requests = tuple(_read_request(seq, p) for seq, p in _request_files(path))
        return cls(path, manifest, requests)

    @property
    def tokenizer_dir(self) -> Path | None:
        return self.path / self.manifest.tokenizer if self.manifest.tokenizer else None

    def load_tokenizer(self) -> "PreTrainedTokenizerBase":
        """The recorded tokenizer, from the recording's own files (never from a hub)."""
        folder = self.tokenizer_dir
        if folder is None or not folder.is_dir():
            raise RecordingError(f"{self.path} holds no tokenizer (it was recorded without one); pass tokenizer=")
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
