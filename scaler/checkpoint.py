"""Training checkpoints: the booster every N rounds, committed or invisible.

Layout under the run's output URL::

    OUTPUT/checkpoints/checkpoint.json        written last: round, file, sha256, history
    OUTPUT/checkpoints/round-000040.ubj       the booster after 40 rounds (UBJSON)

A checkpoint is written by the rank-0 XGBoost worker (from inside training)
and read by the driver to resume. The JSON names the booster file and its
sha256, so a torn write of either file is detected; older booster files are
removed only after the new JSON is in place. Nothing here uses pickle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from scaler import storage
from scaler.config import redact
from scaler.errors import BundleError

__all__ = ["Checkpoint", "write_checkpoint", "read_checkpoint", "clear_checkpoints", "fingerprint"]

INDEX = "checkpoint.json"


@dataclass
class Checkpoint:
    """A committed checkpoint: the booster after ``rounds`` rounds."""

    rounds: int
    booster_bytes: bytes
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    fingerprint: str = ""

    def booster(self) -> Any:
        import xgboost

        b = xgboost.Booster()
        b.load_model(bytearray(self.booster_bytes))
        return b


def fingerprint(parts: dict[str, Any]) -> str:
    """A short hash of what a checkpoint must agree with to be resumed."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_checkpoint(
    url: str,
    booster: Any,
    rounds: int,
    history: dict[str, Any],
    fp: str,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write the booster, then the index that commits it, then prune."""
    data = bytes(booster.save_raw(raw_format="ubj"))
    name = f"round-{rounds:06d}.ubj"
    storage.write_bytes(storage.join(url, name), data, storage_options)
    index = {
        "rounds": rounds,
        "file": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "fingerprint": fp,
        "history": history,
    }
    storage.write_bytes(storage.join(url, INDEX), json.dumps(index).encode(), storage_options)
    storage.prune(url, prefix="round-", keep=name, storage_options=storage_options)


def read_checkpoint(url: str, storage_options: dict[str, Any] | None = None) -> Checkpoint | None:
    """The committed checkpoint at ``url``, or None when there is none.

    Raises :class:`BundleError` when the index points at a missing or
    altered booster file.
    """
    try:
        raw = storage.read_bytes(storage.join(url, INDEX), storage_options)
    except FileNotFoundError:
        return None
    try:
        index = json.loads(raw)
        name = index["file"]
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(f"Checkpoint index at {redact(url)!r} is unreadable: {e}") from e
    try:
        data = storage.read_bytes(storage.join(url, name), storage_options)
    except FileNotFoundError as e:
        raise BundleError(
            f"Checkpoint {redact(url)}/{name} is missing though {INDEX} names it. "
            "Remove the checkpoints folder to start training from scratch."
        ) from e
    if hashlib.sha256(data).hexdigest() != index["sha256"]:
        raise BundleError(
            f"Checkpoint {redact(url)}/{name} was altered (sha256 mismatch). Remove the "
            "checkpoints folder to start training from scratch."
        )
    return Checkpoint(
        int(index["rounds"]), data, index.get("history", {}), index.get("fingerprint", "")
    )


def clear_checkpoints(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove every checkpoint at ``url``."""
    storage.remove(url, storage_options)
