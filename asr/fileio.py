"""Writing files so that an interrupted or failed write never leaves a partial file or harms the
previous one: every output of ours (manifests, checkpoints, model files, reports) goes through here;
and reading a user's text file with a one-line error."""
import contextlib
import io
import os
import tempfile
from typing import Iterator, List, Optional

import torch

from .errors import ASRError


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path` and renames it into place only if the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path))
    except OSError as e:
        raise unwritable(path, e) from e
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make shared outputs unreadable to others
    try:
        yield tmp
        _fsync(tmp)  # the data on disk before the name points at it: a crash leaves the old file or the new
        os.replace(tmp, path)
        _fsync(folder)  # the rename itself survives a crash
    except OSError as e:  # a full disk, a file size limit, a read-only folder: the old file is still there
        if e.filename not in (None, tmp, path):  # another file's problem (an input, say): not ours to word
            raise
        raise unwritable(path, e) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def unwritable(path: str, error: OSError) -> ASRError:
    """The one-line error for an output that could not be written."""
    kept = "; the earlier file is unchanged" if os.path.exists(path) else ""
    return ASRError(f"{path}: cannot be written ({error.strerror or error}){kept}")


def _fsync(path: str) -> None:
    """Flushes a file's (or a folder's) contents to disk, where the platform and file system allow."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. folders cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not support fsync on folders
        pass
    finally:
        os.close(fd)


def remove_unfinished_writes(folder: str, of: Optional[List[str]] = None) -> List[str]:
    """Deletes the temporary files atomic_output leaves in `folder` when its process is killed
    mid-write (never renamed into place, so never read): all of them, or those of the files named in
    `of`; returns their names."""
    prefixes = tuple(".tmp-" + name for name in of) if of is not None else (".tmp-",)
    names = [n for n in os.listdir(folder) if n.startswith(prefixes)] if os.path.isdir(folder) else []
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, name))
    return names


def atomic_save(obj, path: str) -> None:
    """torch.save through atomic_output."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        sink = _WriteErrors(f)
        try:
            torch.save(obj, sink)
        except RuntimeError:  # torch reports a failed write as "unexpected pos"; the OSError says why
            if sink.error is not None:
                raise sink.error from None
            raise


class _WriteErrors(io.RawIOBase):
    """A file for torch.save that keeps the OSError of a failed write (a full disk), which torch
    itself turns into an uninformative RuntimeError."""

    def __init__(self, f):
        super().__init__()
        self.f, self.error = f, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        if not self.f.closed:  # also called when this wrapper is garbage-collected, after the file's close
            self.f.flush()


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
