"""Training configs: a YAML file of TrainConfig fields plus KEY=VALUE overrides, every entry checked
against the dataclass it configures (TrainConfig; `model:` against ModelConfig, `decoding:` against
DecodingOptions), and the batch sizes that training and decoding share by default."""
import difflib
import os
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from .augment import AugmentConfig
from .checkpoint import RANKINGS
from .decode import DecodingOptions
from .errors import ASRError
from .model import PRESETS, ModelConfig
from .text import NUMERALS

BATCH_SECONDS = 120.0  # padded audio seconds per batch: training's default, and decoding's
MAX_BATCH_SIZE = 32  # utterances per batch at most when decoding (validation, transcription, evaluation)
AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    # manifests to train on and validate with (the command line's --train/--valid replace these);
    # several training corpora share one vocabulary, and each dev set is also reported on its own
    train: List[str] = field(default_factory=list)
    valid: List[str] = field(default_factory=list)
    # per training manifest: how many times each of its utterances is drawn per epoch on average
    # (1 = once; 0.5 = half of them, others each epoch; 3 = three times); empty = all 1
    train_weights: List[float] = field(default_factory=list)
    preset: str = "small"
    # overrides of the preset's ModelConfig fields
    model: Dict = field(default_factory=dict, metadata={"schema": ModelConfig})
    lang: str = "en"
    # Chinese only: "chinese" spells Arabic numbers in transcripts as Chinese numerals ("3" -> "三"), so
    # the model learns one spelling; saved in model.pt, and references are scored the same way
    numerals: str = "keep"
    # characters seen fewer times in the training transcripts are left out of the vocabulary (trained and
    # scored as <unk>, counted in the log and model.pt): thousands of rare Chinese characters otherwise
    # each get an output class that is trained on one or two examples
    min_token_count: int = 1
    epochs: int = 30
    max_batch_seconds: float = BATCH_SECONDS  # padded audio seconds per batch (per step, all processes)
    max_batch_size: int = 256
    min_duration: float = 0.1
    max_duration: float = 30.0
    peak_lr: float = 2e-3
    warmup_steps: int = 500
    weight_decay: float = 1e-6
    # "all" parameters, or only "matrices" (not biases, norms, embeddings: decaying those only hurts)
    weight_decay_scope: str = "all"
    # learning-rate schedule after warm-up: "inverse_sqrt" (Transformer/ESPnet) or "cosine" (to 0 at the last epoch)
    schedule: str = "inverse_sqrt"
    grad_clip: float = 5.0
    accum_grad: int = 1
    seed: int = 0
    num_workers: int = 1
    keep_best: int = 5  # best checkpoints kept (by rank_by, then validation loss)
    rank_by: str = "cer"  # "cer" (greedy validation CER) or "acc" (teacher-forced accuracy; see checkpoint.py)
    average_best: int = 5  # model.pt = mean of this many best checkpoints (0 or 1: the best one)
    amp: str = "none"  # mixed precision: "bf16" (CUDA or CPU) or "fp16" (CUDA only)
    threads: int = 0  # torch threads per process (0 = torch's default)
    cmvn_utterances: int = 0  # 0 = every training utterance
    # stop before an epoch that would end past this many minutes of training (0 = no limit), so a
    # recipe's time is bounded on any machine; model.pt is then averaged from what was reached
    max_minutes: float = 0.0
    # decoded training audio kept in EXP_DIR/audio_cache (exact samples: results do not change), so
    # compressed or resampled corpora are decoded once instead of every epoch
    audio_cache: bool = True
    # validation decodes greedily with at most 2 x the reference length + 10 tokens, every this many epochs
    # (and at the last); other epochs report teacher-forced loss and accuracy only
    valid_decode_every: int = 1
    # waveform augmentation in the data loader: speed, volume, noise, reverberation (AugmentConfig fields)
    augment: Dict = field(default_factory=dict, metadata={"schema": AugmentConfig})
    # minimum expected character errors (asr/mwer.py), for fine-tuning a trained model (asr train --init-from):
    # this weight × the expected errors over each utterance's mwer_nbest-best list (the beam search with
    # the decoding options below) is added to the joint loss; 0 = off
    mwer_weight: float = 0.0
    mwer_nbest: int = 4
    # DecodingOptions fields recommended for this model; saved in model.pt, the default when decoding with it
    decoding: Dict = field(default_factory=dict, metadata={"schema": DecodingOptions})

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ASRError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.amp not in AMP_MODES:
            raise ASRError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        for name, allowed in (("weight_decay_scope", ("all", "matrices")), ("schedule", ("inverse_sqrt", "cosine")),
                              ("rank_by", RANKINGS), ("numerals", NUMERALS)):
            if getattr(self, name) not in allowed:
                raise ASRError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.train and self.train_weights and len(self.train_weights) != len(self.train):
            raise ASRError(f"train_weights has {len(self.train_weights)} entries for {len(self.train)} training manifests")
        if self.min_token_count < 1:
            raise ASRError(f"min_token_count must be 1 or more, got {self.min_token_count}")
        if self.valid_decode_every < 1:
            raise ASRError("valid_decode_every must be 1 or more")
        if self.mwer_weight < 0 or self.mwer_nbest < 2:
            raise ASRError(f"mwer_weight must be >= 0 and mwer_nbest >= 2 (an expectation needs a list), "
                           f"got {self.mwer_weight} and {self.mwer_nbest}")
        self.model_config(vocab_size=0)  # bad model options fail here, before an experiment folder is made
        self.decoding_options()
        self.augment_config()

    @classmethod
    def from_dict(cls, d: Dict) -> "TrainConfig":
        return cls(**conform(d, cls))

    def model_config(self, vocab_size: int) -> ModelConfig:
        try:
            return ModelConfig.from_dict({**PRESETS[self.preset], **self.model, "vocab_size": vocab_size})
        except (TypeError, ValueError) as e:
            raise ASRError(f"bad model options: {e}") from None

    def augment_config(self) -> AugmentConfig:
        try:
            return AugmentConfig(**self.augment)
        except (TypeError, ValueError) as e:
            raise ASRError(f"bad augment options: {e}") from None

    def decoding_options(self) -> DecodingOptions:
        try:
            return DecodingOptions(**self.decoding)
        except (TypeError, ValueError) as e:
            raise ASRError(f"bad decoding options: {e}") from None


def load_train_config(path: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """The YAML file at `path` with `overrides` (KEY=VALUE, dotted keys) applied on top."""
    return load_config(path, overrides, TrainConfig)


def load_config(path: Optional[str], overrides: Sequence[str], schema: type):
    """An instance of the dataclass `schema` from the YAML file at `path` (none: its defaults) with
    `overrides` applied on top, every entry checked against its field."""
    data = {}
    if path is not None:
        if not os.path.isfile(path):
            raise ASRError(f"{path}: no such config file")
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ASRError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        try:
            data = conform(data, schema)
        except ASRError as e:
            raise ASRError(f"{path}: {e}") from None
    return schema(**apply_overrides(data, overrides, schema))


def apply_overrides(data: Dict, overrides: Sequence[str], schema: type) -> Dict:
    """`data` (not changed) with each KEY=VALUE of `overrides` set, then checked against `schema`.

    KEY may be dotted to reach into sections (`model.specaugment.time_masks=0`); VALUE is read as
    YAML and then converted to the field's type (see `conform`)."""
    data = _copy_sections(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ASRError(f"override {item!r} is not KEY=VALUE")
        try:
            target, leaf = _section_of(data, key, schema)
        except ASRError as e:
            raise ASRError(f"override {item!r}: {e}") from None
        target[leaf] = yaml.safe_load(text)
    return conform(data, schema)


def _section_of(data: Dict, key: str, schema: type) -> Tuple[Dict, str]:
    """The mapping in `data` that the dotted `key` sets a value in (made where missing), and the name it sets."""
    *parents, leaf = key.split(".")
    target, section = data, schema
    for depth, name in enumerate(parents):
        where = ".".join(parents[: depth + 1])
        name, section = _lookup(section, name, where)
        if section is None:
            raise ASRError(f"{where!r} is a value, not a section")
        target = target.setdefault(name, {})
        if not isinstance(target, dict):
            raise ASRError(f"{where!r} is not a mapping in the config")
    return target, _lookup(section, leaf, key)[0]


def conform(data: Any, schema: type, where: str = "") -> Dict:
    """A copy of the mapping `data` with every value converted to the type of its field in the
    dataclass `schema`, recursing into sections (dataclass-typed fields, and dict fields whose
    metadata names a schema). An unknown key is an error suggesting the closest known one; an int
    becomes a float where a float is expected; Optional fields accept null or "none"."""
    if not isinstance(data, dict):
        raise ASRError(f"{repr(where) if where else 'the config'} must be a mapping of options, got {data!r}")
    hints = typing.get_type_hints(schema)
    out = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else str(key)
        name, section = _lookup(schema, str(key), dotted)
        if name in out:
            raise ASRError(f"{dotted!r} is given twice (once under its old name)")
        out[name] = conform(value, section, dotted) if section else _convert(value, hints[name], dotted)
    return out


def _lookup(schema: type, name: str, dotted: str) -> Tuple[str, Optional[type]]:
    """The field `name` of `schema` (its current name, for one renamed) and its own schema, if it is a section."""
    name = getattr(schema, "RENAMED", {}).get(name, name)
    by_name = {f.name: f for f in fields(schema)}
    if name not in by_name:
        close = difflib.get_close_matches(name, list(by_name), n=1)
        parent = dotted.rpartition(".")[0]
        hint = f"; did you mean {(parent + '.' if parent else '') + close[0]!r}?" if close else ""
        raise ASRError(f"unknown option {dotted!r}{hint}")
    hint = typing.get_type_hints(schema)[name]
    section = by_name[name].metadata.get("schema") or (hint if isinstance(hint, type) and is_dataclass(hint) else None)
    return name, section


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}


def _convert(value: Any, hint: Any, key: str) -> Any:
    if typing.get_origin(hint) in (typing.Union, getattr(types, "UnionType", typing.Union)):  # Optional[X], X | None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = args[0] if len(args) == 1 else Any
    hint = typing.get_origin(hint) or hint
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str), dict: isinstance(value, dict)}.get(hint, True)
    if not ok:
        raise ASRError(f"{key!r} must be {_TYPE_NAMES[hint]}, got {value!r}")
    return float(value) if hint is float else value


def _copy_sections(data: Dict) -> Dict:
    return {k: _copy_sections(v) if isinstance(v, dict) else v for k, v in data.items()}
