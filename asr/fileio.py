"""Writing files so that an interrupted or failed write never leaves a partial file or harms the
previous one: every output of ours (manifests, checkpoints, model files, reports) goes through here;
and reading a user's text file with a one-line error."""
import contextlib
import os
import tempfile
from typing import Iterator, List

import torch

from .errors import ASRError


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path` and renames it into place only if the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make shared outputs unreadable to others
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save(obj, path: str) -> None:
    """torch.save through atomic_output."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def refuse_overwrite(path: str, overwrite: bool) -> None:
    """Outputs never replace a user's file unless asked to."""
    if os.path.exists(path) and not overwrite:
        raise ASRError(f"{path} exists: pass --overwrite to replace it")


def read_text_lines(path: str) -> List[str]:
    """The lines of a UTF-8 text file, or an ASRError naming the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise ASRError(f"{path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise ASRError(f"{path}: not a UTF-8 text file ({type(e).__name__})") from None
