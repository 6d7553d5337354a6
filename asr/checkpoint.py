"""Model files and training checkpoints: written atomically, read with weights_only=True, ranked by
validation results, and averaged into the final model file."""
import json
import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional

import torch

from . import __version__
from .errors import ASRError
from .fileio import atomic_output, atomic_save
from .model import ASRModel, ModelConfig
from .text import CharTokenizer

MODEL_FORMAT = "asr-model-1"

log = logging.getLogger("asr.checkpoint")


def load_checkpoint(path: str) -> dict:
    """A model file's or checkpoint's contents, read with weights_only=True: tensors and plain data
    only, so that a file holding other Python objects (whose unpickling could run any code) is
    refused, never run."""
    if not os.path.isfile(path):
        raise ASRError(f"{path}: no such model or checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns (several lines) about foreign pickle protocols
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise ASRError(f"{path}: not a readable checkpoint: {_unreadable(path, e)}") from None


def _unreadable(path: str, error: Exception) -> str:
    """Why torch.load failed, in words: a file of another kind, one cut short, or objects refused."""
    with open(path, "rb") as f:
        head = f.read(4)
    first_sentence = str(error).splitlines()[0].split(". ")[0] if str(error) else ""
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):
        return "not a PyTorch file (neither a zip archive nor a pickle)"
    if isinstance(error, pickle.UnpicklingError) and "Unsupported operand" in str(error):
        return "a pickle not written by torch.save, which is not loaded because unpickling it could run code"
    if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error):
        found = re.search(r"GLOBAL (\S+)", str(error))
        return ("it holds Python objects besides tensors and plain data" + (f" ({found.group(1)})" if found else "")
                + ", which are not loaded because unpickling them could run code")
    if head.startswith(b"PK") and "central directory" in str(error):
        return "a damaged or truncated PyTorch archive (an interrupted copy or download?)"
    return f"{type(error).__name__}: {first_sentence}"


@dataclass
class LoadedModel:
    model: ASRModel
    tokenizer: CharTokenizer
    lang: str
    info: Dict


def numerals_of(info: Dict) -> str:
    """How training spelled Arabic numbers in Chinese transcripts (TrainConfig.numerals), from a model
    file's info; files from before the option say nothing and kept them."""
    return info.get("train_config", {}).get("numerals", "keep")


def model_file(model: ASRModel, tokens: List[str], lang: str, info: Dict) -> dict:
    """Everything needed to run the model: config, vocabulary, language, weights (with CMVN stats)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return dict(format=MODEL_FORMAT, config=model.cfg.to_dict(), tokens=list(tokens), lang=lang,
                info=dict(info), state_dict=state)


def model_from_file(ckpt: dict) -> ASRModel:
    """The model a model file's contents describe, with its weights (on the CPU, in training mode)."""
    model = ASRModel(ModelConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model


def load_model_file(path: str, device: str = "cpu") -> LoadedModel:
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or not str(ckpt.get("format", "")).startswith("asr-model-"):
        raise ASRError(f"{path}: not an asr model file (expected format {MODEL_FORMAT})")
    if ckpt["format"] != MODEL_FORMAT:
        written_by = ckpt.get("info", {}).get("asr_version", "an unrecorded version")
        raise ASRError(f"{path}: model file format {ckpt['format']} (written by asr {written_by}); this asr "
                       f"{__version__} reads {MODEL_FORMAT}")
    loaded = _loaded(ckpt, path)
    loaded.model = loaded.model.to(device).eval()
    return loaded


def _loaded(ckpt: dict, path: str) -> LoadedModel:
    """The model a model file's contents make, on the CPU (what fails here is the file, not a device),
    or an ASRError saying the file is damaged."""
    try:
        tokenizer = CharTokenizer.from_list(ckpt["tokens"])
        return LoadedModel(model_from_file(ckpt), tokenizer, str(ckpt["lang"]), dict(ckpt.get("info", {})))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        words = " ".join(str(e).split())
        raise ASRError(f"{path}: a damaged asr model file ({type(e).__name__}: "
                       f"{words[:160] + '...' if len(words) > 160 else words})") from None


def model_card(path: str) -> Dict:
    """What a model file says about itself: its model, what it was trained on and how far, the dev
    results it was chosen by, the decoding options recommended for it, and the scores of any
    `asr evaluate` folder beside it (EXP_DIR/eval_*/summary.json, as the recipes write)."""
    loaded = load_model_file(path)
    info, cfg = loaded.info, loaded.model.cfg
    valid = info.get("best_valid", {})
    evaluations = dict(info.get("evaluations", {}))  # recorded in the file by asr evaluate --record
    for name in sorted(os.listdir(os.path.dirname(os.path.abspath(path)))):
        summary = os.path.join(os.path.dirname(os.path.abspath(path)), name, "summary.json")
        if name.startswith("eval") and os.path.isfile(summary):
            with open(summary, encoding="utf-8") as f:
                s = json.load(f)
            evaluations[name] = dict(cer=s.get("cer"), wer=s.get("wer"), utterances=s.get("num_utterances"),
                                     manifest=s.get("manifest"))
    return dict(file=os.path.abspath(path), trained_with=info.get("asr_version", "an unrecorded version"),
                model=dict(arch=cfg.arch, parameters=sum(p.numel() for p in loaded.model.parameters()),
                           d_model=cfg.d_model, encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers,
                           subsampling=cfg.subsampling, vocabulary=len(loaded.tokenizer)),
                lang=loaded.lang, numerals=numerals_of(info), corpora=info.get("train_corpora", []),
                epochs=info.get("epoch"), steps=info.get("step"), averaged=info.get("averaged", []),
                dev={k: valid[k] for k in ("valid_acc", "valid_cer", "valid_loss", "minutes") if k in valid},
                decoding=info.get("decoding", {}), longest_train_utterance=info.get("longest_train_utterance"),
                evaluations=evaluations)


def record_evaluation(path: str, name: str, summary: Dict) -> None:
    """Keeps an evaluation's scores in the model file's card (info["evaluations"][name]), so they
    travel with the file; the file is rewritten atomically and its weights are untouched."""
    ckpt = load_checkpoint(path)
    if ckpt.get("format") != MODEL_FORMAT:
        raise ASRError(f"{path}: not a model file of format {MODEL_FORMAT}: cannot record an evaluation in it")
    scores = dict(cer=summary.get("cer"), wer=summary.get("wer"), utterances=summary.get("num_utterances"),
                  manifest=summary.get("manifest"), decoding=summary.get("decoding"), asr_version=__version__)
    ckpt["info"] = {**ckpt.get("info", {}), "evaluations": {**ckpt.get("info", {}).get("evaluations", {}), name: scores}}
    atomic_save(ckpt, path)


def average_state_dicts(states: Iterable[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Element-wise mean of model weights, summed in float64 (integer buffers taken from the last)."""
    total: Dict[str, torch.Tensor] = {}
    count = 0
    for state in states:
        for k, v in state.items():
            if v.is_floating_point():
                total[k] = total[k] + v.double() if k in total else v.double()
            else:
                total[k] = v
        count += 1
    return {k: (v / count).float() if v.is_floating_point() else v for k, v in total.items()}


def average_checkpoints(paths: List[str], out_path: str) -> None:
    """Writes a model file whose weights are the mean of `paths` (see averaged_model_file), once it
    is sure to load as a model."""
    averaged = averaged_model_file(paths)
    _loaded(averaged, paths[0])
    atomic_save(averaged, out_path)


def averaged_model_file(paths: List[str]) -> dict:
    """A model file whose weights are the mean of `paths` (config, vocabulary and info from the first),
    reading each file once and holding one at a time besides the running sums."""
    if not paths:
        raise ASRError("no checkpoints to average")
    first: Dict = {}

    shapes: Dict[str, torch.Size] = {}

    def states():
        for i, path in enumerate(paths):
            ckpt = load_checkpoint(path)
            if (not isinstance(ckpt, dict) or ckpt.get("format") != MODEL_FORMAT
                    or not isinstance(ckpt.get("state_dict"), dict)):
                raise ASRError(f"{path}: not an asr model file or checkpoint (format {MODEL_FORMAT} with weights)")
            state = ckpt["state_dict"]
            if i == 0:
                first.update((k, v) for k, v in ckpt.items() if k not in ("training", "state_dict"))
                shapes.update((k, getattr(v, "shape", None)) for k, v in state.items())
            elif {k: getattr(v, "shape", None) for k, v in state.items()} != shapes:
                raise ASRError(f"{path}: a checkpoint of another model than {paths[0]} (its weights differ in names "
                               "or shapes), which cannot be averaged with it")
            yield state

    averaged = average_state_dicts(states())
    first["info"] = {**first.get("info", {}), "averaged": [os.path.basename(p) for p in paths]}
    return {**first, "state_dict": averaged}


def read_metrics(exp_dir: str) -> Dict[int, Dict]:
    """EXP_DIR/metrics.jsonl by epoch (a later line for the same epoch wins)."""
    path = os.path.join(exp_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise ASRError(f"{exp_dir}: no metrics.jsonl, so no validated checkpoints to rank")
    with open(path, encoding="utf-8") as f:
        return {m["epoch"]: m for m in map(json.loads, filter(str.strip, f))}


RANKINGS = ("cer", "acc")


def ranked_checkpoints(exp_dir: str, rank_by: str = "cer") -> List[str]:
    """Kept epoch checkpoints, best first: by lowest validation CER ("cer"; epochs validated without
    decoding rank after those with a CER), or by highest teacher-forced token accuracy ("acc", which
    still means something while greedy CER is over 100 % early in a long training); then by loss, and
    the later epoch on ties."""
    by_epoch = read_metrics(exp_dir)
    folder = os.path.join(exp_dir, "checkpoints")
    kept = [e for e in by_epoch if os.path.isfile(os.path.join(folder, f"epoch{e}.pt"))]
    first = ((lambda m: m.get("valid_cer", float("inf"))) if rank_by == "cer" else (lambda m: -m["valid_acc"]))
    kept.sort(key=lambda e: (first(by_epoch[e]), by_epoch[e]["valid_loss"], -e))
    return [os.path.join(folder, f"epoch{e}.pt") for e in kept]


class CheckpointManager:
    """The checkpoints of one training run: EXP_DIR/checkpoints/epochN.pt for the best `keep_best`
    epochs, checkpoints/last.pt to resume from, the validation results they are ranked by
    (EXP_DIR/metrics.jsonl), and EXP_DIR/model.pt, the mean of the best `average_best`."""

    def __init__(self, exp_dir: str, keep_best: int, average_best: int, rank_by: str = "cer"):
        self.exp_dir, self.keep_best, self.average_best, self.rank_by = exp_dir, keep_best, average_best, rank_by
        self.folder = os.path.join(exp_dir, "checkpoints")
        self.last = os.path.join(self.folder, "last.pt")
        self.model_path = os.path.join(exp_dir, "model.pt")

    def save(self, state: Dict, name: str = "last.pt") -> str:
        path = os.path.join(self.folder, name)
        atomic_save(state, path)
        return path

    def load_last(self) -> Optional[Dict]:
        """The state to resume from, or None when there is none."""
        return load_checkpoint(self.last) if os.path.exists(self.last) else None

    def add_epoch(self, epoch: int, metrics: Dict, state: Dict) -> None:
        """Records the epoch's validation results and checkpoint, then drops all but the best `keep_best`."""
        path = os.path.join(self.exp_dir, "metrics.jsonl")
        earlier = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                earlier = f.read()
        with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:  # never a torn line
            f.write(earlier + json.dumps(metrics) + "\n")
        self.save(state, f"epoch{epoch}.pt")
        self.save(state, "last.pt")
        for path in ranked_checkpoints(self.exp_dir, self.rank_by)[self.keep_best:]:
            os.unlink(path)

    def write_model(self, finish: Optional[Callable[[Dict], None]] = None) -> str:
        """EXP_DIR/model.pt: the average of the best checkpoints (or the best one), completed in place
        by `finish` (training's choice of alignment heads) before it is written."""
        best = ranked_checkpoints(self.exp_dir, self.rank_by)[: max(1, self.average_best)]
        state = averaged_model_file(best)
        best_epoch = int(os.path.basename(best[0])[len("epoch"):-len(".pt")])  # ranked: epochN.pt files only
        state["info"]["best_valid"] = read_metrics(self.exp_dir)[best_epoch]  # for the model card
        if finish is not None:
            finish(state)
        atomic_save(state, self.model_path)
        log.info("wrote %s (average of %s)", self.model_path, ", ".join(os.path.basename(p) for p in best))
        return self.model_path
