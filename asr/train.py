"""Teacher-forced training with joint CTC: one process, or many under torchrun (DDP).

Checkpoints hold everything needed to continue exactly (model, optimiser, scheduler, sampler
position, RNG states), so an interrupted run ends where an uninterrupted one would."""
import contextlib
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import __version__
from .checkpoint import CheckpointManager, LoadedModel, load_model_file, model_file, model_from_file
from .config import TrainConfig
from .data import Batch, BucketBatchSampler, SpeechDataset, collate, feature_statistics, filter_segments
from .errors import ASRError
from .fileio import remove_unfinished_writes
from .heads import describe_heads, find_alignment_heads
from .model import ASRModel, ModelConfig
from .mwer import MWERObjective
from .runtime import Distributed, autocast, exclusive_run, process_group, rng_state, set_rng_state, stop_on_sigint
from .segments import Segment, checked_manifest
from .text import CharTokenizer, normalize_text
from .validate import validate

log = logging.getLogger("asr.train")


def lr_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, kind: str = "inverse_sqrt",
                total_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak rate, then decay with 1/sqrt(step) (the Transformer/ESPnet schedule)
    or along a half cosine to 0 at total_steps."""
    warmup = max(1, warmup_steps)

    def inverse_sqrt(step: int) -> float:
        return min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))

    def cosine(step: int) -> float:
        progress = min(1.0, max(0, step + 1 - warmup) / max(1, total_steps - warmup))
        return min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_sqrt if kind == "inverse_sqrt" else cosine)


def parameter_groups(model: torch.nn.Module, weight_decay: float, scope: str) -> List[Dict]:
    """AdamW's parameter groups: weight decay on every parameter ("all"), or only on weight
    matrices and convolution kernels ("matrices"), not on biases, norms and embeddings."""
    if scope == "all":
        return [dict(params=list(model.parameters()), weight_decay=weight_decay)]
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decayed = [p for p in model.parameters() if p.ndim >= 2 and id(p) not in embeddings]
    kept = [p for p in model.parameters() if p.ndim < 2 or id(p) in embeddings]
    return [dict(params=decayed, weight_decay=weight_decay), dict(params=kept, weight_decay=0.0)]


@dataclass
class TrainingData:
    train: SpeechDataset  # every training corpus, one after the other
    weights: Optional[List[float]]  # per training utterance, how often an epoch draws it (None: once each)
    valid: Dict[str, SpeechDataset]  # each dev set by name
    # seconds (of an utterance, or of utterances joined by augment.concat_prob), slowed down by the
    # slowest speed perturbation: transcription cuts longer recordings, because attention does not
    # generalise far past what it trained on
    longest: float
    unknown: Dict[str, int]  # training characters outside the vocabulary (trained as <unk>), by count
    num_characters: int  # characters in the training transcripts
    corpora: List[Dict]  # per training manifest: its path, utterances and hours (for the model card)


def set_names(manifests: Sequence[str]) -> List[str]:
    """Short distinct names for dev sets: the file name, with its folder where file names clash."""
    stems = [os.path.splitext(os.path.basename(m))[0] for m in manifests]
    if len(set(stems)) == len(stems):
        return stems
    return [os.path.join(os.path.basename(os.path.dirname(os.path.abspath(m))), stem) for m, stem in zip(manifests, stems)]


def transcribed_segments(manifest: str, cfg: TrainConfig) -> List[Segment]:
    """A training or dev manifest's segments, every audio file there (checked_manifest) and every line
    with a 'text'; those whose transcript is empty once normalised (a corpus's noise-only
    utterances, say) are left out, with a warning that counts them."""
    segments = checked_manifest(manifest, need_text=True)
    spoken = [bool(normalize_text(s.text, cfg.lang, numerals=cfg.numerals)) for s in segments]
    empty = [s.id for s, said in zip(segments, spoken) if not said]
    if empty:
        log.warning("%s: left out %d utterances with an empty transcript, e.g. %s", manifest, len(empty),
                    ", ".join(empty[:3]))
    return [s for s, said in zip(segments, spoken) if said]


def load_data(cfg: TrainConfig, tokens_path: str, write_tokens: bool = True, cache_dir: Optional[str] = None,
              tokenizer: Optional[CharTokenizer] = None) -> TrainingData:
    """The training segments of every corpus within the configured durations and each dev set, with
    the tokenizer read from `tokens_path` (on resume), or else the given one (a model fine-tuned keeps
    its vocabulary) or one built over all training transcripts, saved there."""
    corpora = []
    for manifest in cfg.train:
        segments, dropped = filter_segments(transcribed_segments(manifest, cfg), cfg.min_duration, cfg.max_duration)
        if dropped:
            log.info("%s: dropped %d utterances outside [%.2f, %.1f] s", manifest, dropped, cfg.min_duration,
                     cfg.max_duration)
        if not segments:
            raise ASRError(f"{manifest}: no usable training utterances")
        corpora.append(segments)
    train_segments = [s for segments in corpora for s in segments]
    weights = ([w for segments, w in zip(corpora, cfg.train_weights) for _ in segments]
               if any(w != 1 for w in cfg.train_weights) else None)
    texts = [normalize_text(s.text or "", cfg.lang, numerals=cfg.numerals) for s in train_segments]
    if os.path.exists(tokens_path):
        tokenizer = CharTokenizer.load(tokens_path)
    else:
        tokenizer = tokenizer or CharTokenizer.build(texts, min_count=cfg.min_token_count)
        if write_tokens:
            tokenizer.save(tokens_path)
    unknown, num_characters = tokenizer.coverage(texts)
    log.info("vocabulary: %d tokens; %d of %d training characters (%.3f %%) are outside it and train as <unk>%s",
             len(tokenizer), sum(unknown.values()), num_characters, 100 * sum(unknown.values()) / max(num_characters, 1),
             (": " + ", ".join(f"{c!r} x{n}" for c, n in list(unknown.items())[:10])) if unknown else "")
    augment = cfg.augment_config()
    train = SpeechDataset(train_segments, tokenizer, cfg.lang, cache_dir=cache_dir, augment=augment, seed=cfg.seed,
                          numerals=cfg.numerals)
    valid = {name: SpeechDataset(transcribed_segments(m, cfg), tokenizer, cfg.lang, cache_dir=cache_dir,
                                 numerals=cfg.numerals)
             for name, m in zip(set_names(cfg.valid), cfg.valid)}
    longest = max([s.duration for s in train_segments] + [augment.concat_seconds] * (augment.concat_prob > 0))
    longest /= min(augment.speed_factors or [1.0])
    sizes = [dict(manifest=os.path.abspath(m), utterances=len(s), hours=round(sum(x.duration for x in s) / 3600, 3))
             for m, s in zip(cfg.train, corpora)]
    return TrainingData(train, weights, valid, longest, unknown, num_characters, sizes)


def validate_all(model: ASRModel, sets: Dict[str, SpeechDataset], device: torch.device, num_workers: int,
                 decode_cer: bool) -> Dict[str, float]:
    """Each dev set's results, and their means (each set counting equally), which rank checkpoints."""
    results = {name: validate(model, dataset, device, num_workers, decode_cer=decode_cer)
               for name, dataset in sets.items()}
    metrics = {k: sum(r[k] for r in results.values()) / len(results) for k in next(iter(results.values()))}
    if len(results) > 1:
        metrics.update((f"{k}[{name}]", v) for name, r in results.items() for k, v in r.items())
    return metrics


@dataclass
class EpochTotals:
    """The epoch's training loss and audio so far; checkpointed, so a resumed epoch reports all of it."""
    loss: float = 0.0  # per-utterance losses, summed
    utts: int = 0
    audio: float = 0.0  # seconds

    def add(self, loss: float, utts: int, audio: float) -> None:
        self.loss += loss * utts
        self.utts += utts
        self.audio += audio


def backward(model: torch.nn.Module, batch: Batch, device: torch.device, generator: torch.Generator,
             scaler: torch.amp.GradScaler, amp: str, weight: float, sync: bool, step: int,
             mwer: Optional[MWERObjective] = None) -> float:
    """Accumulates the gradients of `weight` × the batch's loss (synchronising DDP ranks only when
    `sync`); returns the loss. `step` (optimiser steps so far) sets loss terms that decay; `mwer`
    adds minimum expected error training's term."""
    is_ddp = isinstance(model, DistributedDataParallel)
    waves, lengths, tokens = batch.waveforms.to(device), batch.waveform_lengths.to(device), batch.tokens.to(device)
    with model.no_sync() if is_ddp and not sync else contextlib.nullcontext(), autocast(amp, device):
        out = model(waves, lengths, tokens, generator=generator, step=step)
        loss = out["loss"]
        if mwer is not None:
            loss = loss + mwer(model.module if is_ddp else model, out, tokens)
        scaler.scale(loss * weight).backward()
    return loss.item()


def apply_gradients(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                    scaler: torch.amp.GradScaler, grad_clip: float) -> bool:
    """One update from the accumulated gradients, clipped to norm `grad_clip`; skipped (returning False)
    when their norm is not finite. The learning rate schedule moves on either way."""
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    finite = bool(torch.isfinite(grad_norm))
    if finite:
        scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return finite


def progress_bar(loader: DataLoader, description: str, shown: bool) -> tqdm:
    # disable=None: a live bar on a terminal, nothing in redirected logs
    return tqdm(loader, desc=description, disable=None if shown else True, dynamic_ncols=True, leave=False)


def merged(base: Dict, overrides: Dict) -> Dict:
    """`base` with `overrides` on top, nested sections merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def fine_tuned(start: LoadedModel, cfg: TrainConfig) -> ASRModel:
    """The model of a model file, to train on: its sizes, vocabulary, weights and feature statistics,
    with the config's `model:` entries (dropout, CTC weight, SpecAugment, scheduled sampling...) on top."""
    try:
        config = ModelConfig.from_dict(merged(start.model.cfg.to_dict(), cfg.model))
        model = ASRModel(config)
        model.load_state_dict(start.model.state_dict())
    except (TypeError, ValueError, RuntimeError) as e:
        raise ASRError(f"cannot fine-tune with these model options: {str(e).splitlines()[0]}") from None
    return model


def training_batches(data: TrainingData, cfg: TrainConfig, dist: Distributed) -> Tuple[BucketBatchSampler, DataLoader]:
    """This process's sampler of the global batches, and the loader that reads (and augments) them."""
    sampler = BucketBatchSampler([s.duration for s in data.train.segments], cfg.max_batch_seconds,
                                 max_batch_size=cfg.max_batch_size, seed=cfg.seed, num_replicas=dist.world_size,
                                 rank=dist.rank, weights=data.weights, concat=cfg.augment_config())
    # persistent workers: no process start-up at every epoch; the sampler is re-iterated each pass
    return sampler, DataLoader(data.train, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                               persistent_workers=cfg.num_workers > 0)


def out_of_time(seconds: float, epochs: int, max_minutes: float) -> bool:
    """Whether another epoch, as long as the average one so far, would end past max_minutes (0 = never)."""
    if not max_minutes or epochs == 0 or seconds + seconds / epochs <= max_minutes * 60:
        return False
    log.info("stopping after %d epochs (%.1f min): another would pass max_minutes=%g", epochs, seconds / 60,
             max_minutes)
    return True


class Trainer:
    """Trains cfg's model, validating and checkpointing after every epoch (on rank 0 under torchrun)."""

    def __init__(self, cfg: TrainConfig, exp_dir: str, device: str = "cpu",
                 should_stop: Optional[Callable[[int], bool]] = None, init_from: Optional[str] = None):
        self.cfg, self.device, self.dist = cfg, torch.device(device), Distributed.from_env()
        self.should_stop = should_stop or (lambda step: False)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.checkpoints = CheckpointManager(exp_dir, cfg.keep_best, cfg.average_best, cfg.rank_by)
        os.makedirs(self.checkpoints.folder, exist_ok=True)
        if self.dist.is_main:  # what a killed run was writing: never renamed into place, so never read
            remove_unfinished_writes(self.checkpoints.folder)
            remove_unfinished_writes(exp_dir, of=["tokens.txt", "metrics.jsonl", "model.pt"])
        start = load_model_file(init_from) if init_from else None
        self.init_from = os.path.abspath(init_from) if init_from else None
        self.data = load_data(cfg, os.path.join(exp_dir, "tokens.txt"), self.dist.is_main,
                              os.path.join(exp_dir, "audio_cache") if cfg.audio_cache else None,
                              start.tokenizer if start else None)
        if start is None:
            self.model = ASRModel(cfg.model_config(len(self.data.train.tokenizer))).to(self.device)
        else:
            self.model = fine_tuned(start, cfg).to(self.device)
        self.mwer = MWERObjective(cfg.mwer_weight, cfg.mwer_nbest, cfg.decoding_options()) if cfg.mwer_weight else None
        self.sampler, self.train_loader = training_batches(self.data, cfg, self.dist)
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, cfg.weight_decay, cfg.weight_decay_scope),
                                           lr=cfg.peak_lr, betas=(0.9, 0.98))
        self.scheduler = lr_schedule(self.optimizer, cfg.warmup_steps, cfg.schedule,
                                     cfg.epochs * len(self.sampler) // cfg.accum_grad)
        self.generator = torch.Generator().manual_seed(cfg.seed + self.dist.rank)  # SpecAugment
        self.epoch, self.step = 0, 0
        self.seconds = 0.0
        self.batches_done = 0  # of the current pass; the sampler's own count runs ahead with prefetching workers
        self.totals = EpochTotals()

    def fit(self, resume: bool = False) -> Optional[str]:
        """Trains to the configured epoch count; returns the model path, or None if stopped early."""
        state = self.checkpoints.load_last() if resume else None
        if state is not None:
            self.restore(state)
        elif self.init_from is None:  # a fine-tuned model keeps its feature statistics
            self.model.normalize.copy_(feature_statistics(self.data.train.all_samples(self.cfg.cmvn_utterances),
                                                          self.model.frontend))
        model = self.dist.wrap(self.model, self.device)
        with stop_on_sigint(self.dist.is_main) as interrupt:
            while self.epoch < self.cfg.epochs and not self._out_of_time():
                self.sampler.set_epoch(self.epoch)
                start = time.perf_counter()
                train_metrics = self._train_epoch(model, lambda: interrupt.requested or self.should_stop(self.step))
                if train_metrics is None:
                    self.seconds += time.perf_counter() - start
                    if self.dist.is_main:
                        self.checkpoints.save(self.state())
                    log.info("stopped at epoch %d step %d; continue with --resume", self.epoch + 1, self.step)
                    return None
                self.epoch += 1
                self._end_epoch(train_metrics, start)
        if self.dist.is_main:
            self.checkpoints.write_model(self.choose_alignment_heads)
        self.dist.barrier()
        return self.checkpoints.model_path

    def _train_epoch(self, model: torch.nn.Module, stop: Callable[[], bool]) -> Optional[Dict[str, float]]:
        """One pass: its training loss and speed, or None when `stop()` says so after an update."""
        model.train()
        scaler = torch.amp.GradScaler("cuda", enabled=self.cfg.amp == "fp16" and self.device.type == "cuda")
        bar = progress_bar(self.train_loader, f"epoch {self.epoch + 1}/{self.cfg.epochs}", self.dist.is_main)
        totals, start = self.totals, time.perf_counter()
        audio_at_start = totals.audio
        self.batches_done = 0
        for i, batch in enumerate(bar):
            boundary = (i + 1) % self.cfg.accum_grad == 0
            weight = self.dist.share_of_global_batch(len(batch.ids)) / self.cfg.accum_grad
            loss = backward(model, batch, self.device, self.generator, scaler, self.cfg.amp, weight, sync=boundary,
                            step=self.step, mwer=self.mwer)
            if boundary:
                if not apply_gradients(self.model, self.optimizer, self.scheduler, scaler, self.cfg.grad_clip):
                    log.warning("step %d: non-finite gradient norm, update skipped", self.step)
                self.step += 1
            self.batches_done = i + 1
            audio = batch.waveform_lengths.sum().item() / self.model.cfg.features.sample_rate
            totals.add(loss, len(batch.ids), audio)
            bar.set_postfix(loss=f"{totals.loss / totals.utts:.3f}",
                            speed=f"{(totals.audio - audio_at_start) / (time.perf_counter() - start):.0f}x",
                            lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if boundary and stop():
                return None
        seconds = time.perf_counter() - start
        loss, utts, audio = self.dist.sum([totals.loss, totals.utts, totals.audio - audio_at_start])
        self.totals = EpochTotals()
        return dict(train_loss=loss / max(1, utts), train_audio_per_second=audio / seconds)

    def _out_of_time(self) -> bool:
        late = out_of_time(self.seconds, self.epoch, self.cfg.max_minutes)
        if self.dist.world_size > 1:  # rank 0 decides, so that every process stops together
            late = self.dist.sum([float(late and self.dist.is_main)])[0] > 0
        return late

    def _end_epoch(self, train_metrics: Dict[str, float], start: float) -> None:
        """Validates (decoding every valid_decode_every epochs and at the last), then checkpoints."""
        decode_cer = self.epoch % self.cfg.valid_decode_every == 0 or self.epoch == self.cfg.epochs
        valid_metrics = validate_all(self.model, self.data.valid, self.device, self.cfg.num_workers, decode_cer)
        self.seconds += time.perf_counter() - start  # spent training and validating, across resumes
        metrics = dict(epoch=self.epoch, step=self.step, lr=self.scheduler.get_last_lr()[0], **train_metrics,
                       **valid_metrics, minutes=self.seconds / 60)
        if self.dist.is_main:
            log.info("epoch %d: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch"), self.epoch)
            self.checkpoints.add_epoch(self.epoch, metrics, self.state())

    def choose_alignment_heads(self, state: Dict) -> None:
        """Chooses the final (averaged) model's alignment heads on the first dev set, into its file."""
        name, dataset = next(iter(self.data.valid.items()))
        model = model_from_file(state).to(self.device)
        found = find_alignment_heads(model, dataset, self.cfg.num_workers)
        state["info"]["alignment_heads"] = dict(found, manifest=os.path.abspath(self.cfg.valid[0]))
        state["state_dict"]["alignment_heads"] = model.alignment_heads.cpu()
        log.info("%s: %s", name, describe_heads(found))

    def state(self) -> Dict:
        """A model file (with the recommended decoding options in its info) plus the training state."""
        info = dict(epoch=self.epoch, step=self.step, train_config=asdict(self.cfg), decoding=dict(self.cfg.decoding),
                    longest_train_utterance=math.ceil(self.data.longest * 100) / 100, init_from=self.init_from,
                    unknown_train_characters=dict(list(self.data.unknown.items())[:50]),
                    unknown_train_character_count=sum(self.data.unknown.values()),
                    train_characters=self.data.num_characters, train_corpora=self.data.corpora,
                    asr_version=__version__)
        state = model_file(self.model, self.data.train.tokenizer.tokens, self.cfg.lang, info)
        state["training"] = dict(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                                 sampler=self.sampler.state_dict(self.batches_done), rng=rng_state(),
                                 generator=self.generator.get_state(), epoch=self.epoch, step=self.step,
                                 epoch_totals=asdict(self.totals), seconds=self.seconds)
        return state

    def restore(self, state: Dict) -> None:
        if "training" not in state:
            raise ASRError(f"{self.checkpoints.last}: holds no training state to resume from")
        t = state["training"]
        for part, saved in ((self.model, state["state_dict"]), (self.optimizer, t["optimizer"]),
                            (self.scheduler, t["scheduler"]), (self.sampler, t["sampler"])):
            part.load_state_dict(saved)
        set_rng_state(t["rng"])
        self.generator.set_state(t["generator"])
        self.epoch, self.step, self.totals = t["epoch"], t["step"], EpochTotals(**t["epoch_totals"])
        self.seconds = t.get("seconds", 0.0)
        log.info("resumed from %s at epoch %d, step %d", self.checkpoints.last, self.epoch + 1, self.step)


def train(cfg: TrainConfig, train_manifest: Union[str, Sequence[str], None] = None,
          valid_manifest: Union[str, Sequence[str], None] = None, exp_dir: str = "exp", device: str = "cpu",
          resume: bool = False, should_stop: Optional[Callable[[int], bool]] = None,
          init_from: Optional[str] = None) -> Optional[str]:
    """Trains a model into EXP_DIR/model.pt (returned; None when stopped early, to continue with
    resume=True), joining torchrun's process group when launched under torchrun. Manifests given here
    (one or several) replace the config's `train` and `valid` lists. `init_from` (a model file)
    fine-tunes that model instead of starting from random weights (fine_tuned). One run at a time
    per EXP_DIR: another one still running there makes this an ASRError (exclusive_run)."""
    given = {name: [m] if isinstance(m, str) else list(m)
             for name, m in (("train", train_manifest), ("valid", valid_manifest)) if m}
    cfg = replace(cfg, **given)
    for name in ("train", "valid"):
        if not getattr(cfg, name):
            raise ASRError(f"no {name} manifest: pass --{name} or list them under '{name}:' in the config")
    with process_group(device) as device, exclusive_run(exp_dir, Distributed.from_env().is_main):
        return Trainer(cfg, exp_dir, device, should_stop, init_from).fit(resume)
