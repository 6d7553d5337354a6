"""Teacher-forced training with joint CTC: one process, or many under torchrun (DDP).

Checkpoints hold everything needed to continue exactly (model, optimiser, scheduler, sampler
position, RNG states), so an interrupted run ends where an uninterrupted one would."""
import contextlib
import json
import logging
import math
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Dict, List, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from .checkpoint import atomic_save, average_state_dicts, load_checkpoint, model_file
from .data import BucketBatchSampler, SpeechDataset, collate, filter_utterances, load_manifest
from .decode import DecodingOptions, decode
from .errors import ASRError
from .features import GlobalCMVN
from .metrics import character_error_rate
from .model import PRESETS, ASRModel, ModelConfig
from .text import CharTokenizer, normalize_text

log = logging.getLogger("asr.train")


@dataclass
class TrainConfig:
    preset: str = "small"
    model: Dict = field(default_factory=dict)  # overrides of the preset's ModelConfig fields
    lang: str = "en"
    epochs: int = 30
    max_batch_seconds: float = 120.0  # padded audio seconds per batch (per process)
    max_batch_size: int = 256
    min_duration: float = 0.1
    max_duration: float = 30.0
    peak_lr: float = 2e-3
    warmup_steps: int = 500
    weight_decay: float = 1e-6
    grad_clip: float = 5.0
    accum_grad: int = 1
    seed: int = 0
    num_workers: int = 1
    keep_best: int = 5  # best checkpoints kept (by validation CER, then loss)
    average_best: int = 5  # model.pt = mean of this many best checkpoints (0 or 1: the best one)
    amp: str = "none"  # "bf16" or "fp16": mixed precision on CUDA only
    threads: int = 0  # torch threads per process (0 = torch's default)
    cmvn_utterances: int = 0  # 0 = every training utterance

    @classmethod
    def from_dict(cls, d: Dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ASRError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**d)

    def model_config(self, vocab_size: int) -> ModelConfig:
        if self.preset not in PRESETS:
            raise ASRError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        try:
            return ModelConfig.from_dict({**PRESETS[self.preset], **self.model, "vocab_size": vocab_size})
        except (TypeError, ValueError) as e:
            raise ASRError(f"bad model options: {e}") from None


class WarmupInverseSqrt(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up to the peak rate, then decay with 1/sqrt(step) (the Transformer/ESPnet schedule)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int):
        warmup = max(1, warmup_steps)
        super().__init__(optimizer, lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1))))


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


class Trainer:
    def __init__(self, cfg: TrainConfig, train_manifest: str, valid_manifest: str, exp_dir: str,
                 device: str = "cpu", should_stop: Optional[Callable[[int], bool]] = None):
        self.cfg, self.exp_dir, self.device = cfg, exp_dir, torch.device(device)
        self.dist = Distributed.from_env()
        self.should_stop = should_stop or (lambda step: False)
        self.interrupted = False
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        os.makedirs(os.path.join(exp_dir, "checkpoints"), exist_ok=True)

        train_utts, dropped = filter_utterances(load_manifest(train_manifest), cfg.min_duration, cfg.max_duration)
        if dropped:
            log.info("dropped %d training utterances outside [%.2f, %.1f] s", dropped, cfg.min_duration,
                     cfg.max_duration)
        if not train_utts:
            raise ASRError(f"{train_manifest}: no usable training utterances")
        self.valid_utts = load_manifest(valid_manifest)
        # transcription cuts recordings to this: attention does not generalise far past what it saw
        self.longest_utterance = max(u.duration for u in train_utts)
        self.tokenizer = self._tokenizer(train_utts)
        self.model = ASRModel(cfg.model_config(len(self.tokenizer))).to(self.device)
        self.train_set = SpeechDataset(train_utts, self.tokenizer, cfg.lang)
        self.valid_set = SpeechDataset(self.valid_utts, self.tokenizer, cfg.lang)
        self.sampler = BucketBatchSampler([u.duration for u in train_utts], cfg.max_batch_seconds,
                                          max_batch_size=cfg.max_batch_size, seed=cfg.seed,
                                          num_replicas=self.dist.world_size, rank=self.dist.rank)
        # persistent workers: no process start-up at every epoch; the sampler is re-iterated each pass
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate,
                                       num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.peak_lr, betas=(0.9, 0.98),
                                           weight_decay=cfg.weight_decay)
        self.scheduler = WarmupInverseSqrt(self.optimizer, cfg.warmup_steps)
        self.generator = torch.Generator().manual_seed(cfg.seed + self.dist.rank)  # SpecAugment
        self.epoch, self.step, self.history = 0, 0, []
        self.batches_done = 0  # of the current pass; the sampler's own count runs ahead with prefetching workers
        self.epoch_totals = dict(loss=0.0, utts=0, audio=0.0)  # training loss so far this epoch, kept across a resume

    def _tokenizer(self, utts) -> CharTokenizer:
        """Built from the training transcripts on first run; the saved file is reused on resume."""
        path = os.path.join(self.exp_dir, "tokens.txt")
        if os.path.exists(path):
            return CharTokenizer.load(path)
        tokenizer = CharTokenizer.build(normalize_text(u.text, self.cfg.lang) for u in utts)
        if self.dist.is_main:
            tokenizer.save(path)
        return tokenizer

    # -- state -------------------------------------------------------------------------------
    def checkpoint(self) -> Dict:
        info = dict(epoch=self.epoch, step=self.step, train_config=asdict(self.cfg),
                    longest_train_utterance=math.ceil(self.longest_utterance * 100) / 100)
        state = model_file(self.model, self.tokenizer.tokens, self.cfg.lang, info)
        state["training"] = dict(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                                 sampler=self.sampler.state_dict(self.batches_done), rng=rng_state(),
                                 generator=self.generator.get_state(), epoch=self.epoch, step=self.step,
                                 history=self.history, epoch_totals=self.epoch_totals)
        return state

    def restore(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        if "training" not in ckpt:
            raise ASRError(f"{path}: holds no training state to resume from")
        self.model.load_state_dict(ckpt["state_dict"])
        t = ckpt["training"]
        self.optimizer.load_state_dict(t["optimizer"])
        self.scheduler.load_state_dict(t["scheduler"])
        self.sampler.load_state_dict(t["sampler"])
        set_rng_state(t["rng"])
        self.generator.set_state(t["generator"])
        self.epoch, self.step, self.history = t["epoch"], t["step"], list(t["history"])
        self.epoch_totals = dict(t["epoch_totals"])
        log.info("resumed from %s at epoch %d, step %d", path, self.epoch + 1, self.step)

    def save(self, name: str) -> str:
        path = os.path.join(self.exp_dir, "checkpoints", name)
        if self.dist.is_main:
            atomic_save(self.checkpoint(), path)
        return path

    # -- loop --------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> Optional[str]:
        """Trains to the configured epoch count; returns the model path, or None if interrupted."""
        last = os.path.join(self.exp_dir, "checkpoints", "last.pt")
        if resume and os.path.exists(last):
            self.restore(last)
        else:
            self.model.normalize.copy_(GlobalCMVN.from_utterances(
                self.train_set.utterances, self.model.frontend, self.cfg.cmvn_utterances or None))
        model = self.model
        if self.dist.world_size > 1:
            model = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None)
        previous_handler = signal.signal(signal.SIGINT, self._on_sigint) if self.dist.is_main else None
        try:
            while self.epoch < self.cfg.epochs:
                self.sampler.set_epoch(self.epoch)
                if not self._train_epoch(model):
                    self.save("last.pt")
                    log.info("stopped at epoch %d step %d; continue with --resume", self.epoch + 1, self.step)
                    return None
                self.epoch += 1
                self._end_epoch()
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        return self.finish()

    def _on_sigint(self, signum, frame) -> None:
        log.info("interrupt received: saving after this step")
        self.interrupted = True

    def _autocast(self):
        if self.cfg.amp == "none" or self.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[self.cfg.amp]
        return torch.autocast("cuda", dtype=dtype)

    def _train_epoch(self, model) -> bool:
        """One pass; returns False when stopped early (SIGINT or should_stop), state saved by caller."""
        model.train()
        scaler = torch.amp.GradScaler("cuda", enabled=self.cfg.amp == "fp16" and self.device.type == "cuda")
        # tqdm's disable=None: a live bar on a terminal, nothing in redirected logs
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                   disable=None if self.dist.is_main else True,
                   dynamic_ncols=True, leave=False)
        totals, start = self.epoch_totals, time.perf_counter()
        audio_at_start = totals["audio"]
        self.batches_done = 0
        for i, batch in enumerate(bar):
            waves = batch.waveforms.to(self.device)
            lengths = batch.waveform_lengths.to(self.device)
            tokens = batch.tokens.to(self.device)
            boundary = (i + 1) % self.cfg.accum_grad == 0
            sync = contextlib.nullcontext() if boundary or not isinstance(model, DistributedDataParallel) \
                else model.no_sync()
            with sync, self._autocast():
                out = model(waves, lengths, tokens, generator=self.generator)
                scaler.scale(out["loss"] * self._share_of_global_batch(len(batch.ids))
                             / self.cfg.accum_grad).backward()
            if boundary:
                scaler.unscale_(self.optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                if torch.isfinite(grad_norm):
                    scaler.step(self.optimizer)
                else:
                    log.warning("step %d: non-finite gradient norm, update skipped", self.step)
                scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.step += 1
            self.batches_done = i + 1
            totals["loss"] += out["loss"].item() * len(batch.ids)
            totals["utts"] += len(batch.ids)
            totals["audio"] += lengths.sum().item() / self.model.cfg.features.sample_rate
            bar.set_postfix(loss=f"{totals['loss'] / totals['utts']:.3f}",
                            speed=f"{(totals['audio'] - audio_at_start) / (time.perf_counter() - start):.0f}x",
                            lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if boundary and (self.interrupted or self.should_stop(self.step)):
                return False
        seconds = time.perf_counter() - start
        summed = torch.tensor([totals["loss"], totals["utts"], totals["audio"] - audio_at_start], dtype=torch.float64)
        if self.dist.world_size > 1:
            dist.all_reduce(summed)
        loss, utts, audio = summed.tolist()
        self._epoch_train = dict(train_loss=loss / max(1, utts), train_audio_per_second=audio / seconds)
        self.epoch_totals = dict(loss=0.0, utts=0, audio=0.0)
        return True

    def _share_of_global_batch(self, local_size: int) -> float:
        """DDP averages gradients over ranks; weighting each rank's per-utterance mean by its share
        makes the update that of the mean over the whole global batch, however it was split."""
        if self.dist.world_size == 1:
            return 1.0
        total = torch.tensor([local_size], dtype=torch.float64)
        dist.all_reduce(total)
        return local_size * self.dist.world_size / total.item()

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        self.model.eval()
        loader = DataLoader(self.valid_set, batch_size=32, collate_fn=collate, num_workers=self.cfg.num_workers)
        loss = correct = tokens = 0.0
        refs, hyps = [], []
        for batch in loader:
            waves, lengths = batch.waveforms.to(self.device), batch.waveform_lengths.to(self.device)
            out = self.model(waves, lengths, batch.tokens.to(self.device))
            loss += out["loss"].item() * len(batch.ids)
            correct += out["correct"].item()
            tokens += out["tokens"].item()
            for result, ref_tokens, n in zip(decode(self.model, waves, lengths, DecodingOptions(beam_size=1,
                                                                                                ctc_weight=0.0)),
                                             batch.tokens, batch.token_lengths):
                refs.append(self.tokenizer.decode(ref_tokens[:n].tolist()))
                hyps.append(self.tokenizer.decode(result.tokens))
        return dict(valid_loss=loss / max(1, len(refs)), valid_acc=correct / max(1, tokens),
                    valid_cer=character_error_rate(refs, hyps))

    def _end_epoch(self) -> None:
        metrics = dict(epoch=self.epoch, step=self.step, lr=self.scheduler.get_last_lr()[0],
                       **self._epoch_train, **self.validate())
        self.history.append(metrics)
        if not self.dist.is_main:
            return
        log.info("epoch %d: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch"), self.epoch)
        with open(os.path.join(self.exp_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
        self.save(f"epoch{self.epoch}.pt")
        self.save("last.pt")
        for path in ranked_checkpoints(self.exp_dir)[self.cfg.keep_best:]:
            os.unlink(path)

    def finish(self) -> str:
        """model.pt: the average of the best checkpoints (or the best one)."""
        path = os.path.join(self.exp_dir, "model.pt")
        if self.dist.is_main:
            best = ranked_checkpoints(self.exp_dir)[: max(1, self.cfg.average_best)]
            average_checkpoints(best, path)
            log.info("wrote %s (average of %s)", path, ", ".join(os.path.basename(p) for p in best))
        if self.dist.world_size > 1:
            dist.barrier()
        return path


def ranked_checkpoints(exp_dir: str) -> List[str]:
    """Kept epoch checkpoints, best first: lowest validation CER, then loss; the later epoch on ties."""
    metrics_path = os.path.join(exp_dir, "metrics.jsonl")
    if not os.path.isfile(metrics_path):
        raise ASRError(f"{exp_dir}: no metrics.jsonl, so no validated checkpoints to rank")
    with open(metrics_path, encoding="utf-8") as f:
        by_epoch = {m["epoch"]: m for m in map(json.loads, filter(str.strip, f))}
    kept = [e for e in by_epoch if os.path.isfile(os.path.join(exp_dir, "checkpoints", f"epoch{e}.pt"))]
    kept.sort(key=lambda e: (by_epoch[e]["valid_cer"], by_epoch[e]["valid_loss"], -e))
    return [os.path.join(exp_dir, "checkpoints", f"epoch{e}.pt") for e in kept]


def average_checkpoints(paths: List[str], out_path: str) -> None:
    """Writes a model file whose weights are the mean of `paths` (config and vocabulary from the first)."""
    if not paths:
        raise ASRError("no checkpoints to average")
    first = load_checkpoint(paths[0])
    averaged = {k: v for k, v in first.items() if k != "training"}
    averaged["state_dict"] = average_state_dicts(paths)
    averaged["info"] = {**first.get("info", {}), "averaged": [os.path.basename(p) for p in paths]}
    atomic_save(averaged, out_path)


def train(cfg: TrainConfig, train_manifest: str, valid_manifest: str, exp_dir: str, device: str = "cpu",
          resume: bool = False, should_stop: Optional[Callable[[int], bool]] = None) -> Optional[str]:
    """Runs training, joining a torchrun process group when launched under torchrun."""
    dist_env = Distributed.from_env()
    if dist_env.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            device = f"cuda:{dist_env.local_rank}"
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    try:
        return Trainer(cfg, train_manifest, valid_manifest, exp_dir, device, should_stop).fit(resume)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
