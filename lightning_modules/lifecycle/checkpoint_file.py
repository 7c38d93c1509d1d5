"""Reading and writing checkpoint files: atomic saves, and loads that name what is wrong with a bad file.

torch.save writes a zip archive with a CRC-32 per record, but torch.load does not check them, so a flipped bit
in the weights loads silently; `read_checkpoint` verifies every record first."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from pretrained.files import atomic_writer


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be used as it is; the message names the file, the problem and the fix."""


def check_checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The path if it holds a complete, undamaged checkpoint archive; otherwise a CheckpointFileError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointFileError(f"checkpoint {path} does not exist; give the path of a .ckpt file")
    if not path.is_file():
        raise CheckpointFileError(f"checkpoint {path} is not a file; give the path of a .ckpt file")
    size = path.stat().st_size
    fix = "resume from another checkpoint of the run (an earlier best-*.ckpt or a copy), or start the run again"
    if size == 0:
        raise CheckpointFileError(f"checkpoint {path} is empty (0 bytes): its write was cut short; {fix}")
    if not zipfile.is_zipfile(path):
        raise CheckpointFileError(
            f"checkpoint {path} ({size} bytes) is not a PyTorch checkpoint archive: it is truncated or is not a "
            f"checkpoint at all; {fix}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CheckpointFileError(f"checkpoint {path} is damaged ({error}); {fix}") from error
    if damaged is not None:
        raise CheckpointFileError(
            f"checkpoint {path} is corrupt: record {damaged!r} fails its CRC-32 check (a flipped bit on disk or in "
            f"a copy); {fix}"
        )
    return path


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """A verified checkpoint, loaded as plain data (weights_only: never executes code from the file) and
    memory-mapped (its tensors are read from disk when used, so a check costs no second copy of the weights)."""
    path = check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError) as error:
        raise CheckpointFileError(
            f"checkpoint {path} cannot be read as a training checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); it was not written by this template's "
            "train.py, or it is damaged"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointFileError(
            f"checkpoint {path} holds no model state ('state_dict'): it is not a Lightning training checkpoint"
        )
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with a write that cannot leave a half-written file (the temporary file is in
    the checkpoint's own directory, so the final rename never turns into a copy across filesystems) and a
    load that verifies the file first."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        with atomic_writer(path, "wb") as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        check_checkpoint_file(path)
        if map_location is None:
            return super().load_checkpoint(path, weights_only=weights_only)
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
