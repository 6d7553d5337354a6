"""What a training process needs from its surroundings: its place among torchrun's processes, the
random number generators' states (for exact resume), Ctrl-C as a request to stop, one run at a time per
experiment folder, and mixed precision."""
import contextlib
import logging
import os
import random
import signal
import types
from dataclasses import dataclass
from typing import Dict, Iterator, List

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .errors import ASRError

log = logging.getLogger("asr.train")


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: List[float]) -> List[float]:
        """Each value summed over all processes (float64)."""
        summed = torch.tensor(values, dtype=torch.float64)
        if self.world_size > 1:
            dist.all_reduce(summed)
        return summed.tolist()

    def share_of_global_batch(self, local_size: int) -> float:
        """DDP averages gradients over ranks; weighting each rank's per-utterance mean by its share
        makes the update that of the mean over the whole global batch, however it was split."""
        if self.world_size == 1:
            return 1.0
        return local_size * self.world_size / self.sum([local_size])[0]

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model as this process trains it: itself, or in DistributedDataParallel under torchrun."""
        if self.world_size == 1:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


@contextlib.contextmanager
def process_group(device: str) -> Iterator[str]:
    """Joins torchrun's process group when launched under torchrun (one GPU per process on CUDA);
    yields this process's device."""
    env = Distributed.from_env()
    if env.world_size > 1 and not dist.is_initialized():
        if device.startswith("cuda"):
            device = f"cuda:{env.local_rank}"
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield device
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def rng_state() -> Dict:
    return dict(torch=torch.get_rng_state(), python=random.getstate(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def set_rng_state(state: Dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(i) for i in x) if isinstance(x, (list, tuple)) else x


@contextlib.contextmanager
def stop_on_sigint(enabled: bool = True) -> Iterator[types.SimpleNamespace]:
    """Inside the block, Ctrl-C sets `.requested` on the yielded flag instead of raising, so that
    training can stop after the current step and save."""
    flag = types.SimpleNamespace(requested=False)

    def handler(signum, frame):
        log.info("interrupt received: saving after this step")
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler) if enabled else None
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def exclusive_run(exp_dir: str, enabled: bool = True) -> Iterator[None]:
    """Holds EXP_DIR/train.lock (an advisory lock, with this process's id in the file) for the block, so
    that a second training run started on the same folder while one is running is refused instead of
    overwriting its checkpoints. The operating system drops the lock when its process dies however it
    dies, so the file a killed run leaves behind does not block the next one."""
    if not enabled:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    os.makedirs(exp_dir, exist_ok=True)
    path = os.path.join(exp_dir, "train.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            with os.fdopen(fd, encoding="ascii", errors="replace") as f:
                holder = f.read().strip() or "unknown"
            raise ASRError(f"{exp_dir} is in use by another training run (process {holder}): wait for it to "
                           "finish or stop it, or choose another --exp-dir") from None
        try:  # the file we locked may have been removed by a run that just ended: lock the one now there
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def autocast(amp: str, device: torch.device):
    """Mixed precision: "bf16" on CUDA or CPU (CPUs with native bfloat16, e.g. AVX512-BF16 or AMX, run
    the matrix products faster; for the small preset the casts cost as much, see BENCHMARKS.md), "fp16"
    on CUDA only; a no-op for "none" and elsewhere."""
    if amp == "none" or device.type not in ("cuda", "cpu") or (amp == "fp16" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[amp])
