"""Model files and training checkpoints: written atomically, read with weights_only=True."""
import os
from dataclasses import dataclass
from typing import Dict, List

import torch

from .data import atomic_output
from .errors import ASRError
from .model import ASRModel, ModelConfig
from .text import CharTokenizer

MODEL_FORMAT = "asr-model-1"


def atomic_save(obj, path: str) -> None:
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise ASRError(f"{path}: no such model or checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        first_sentence = str(e).splitlines()[0].split(". ")[0] if str(e) else ""
        raise ASRError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first_sentence})") from None


@dataclass
class LoadedModel:
    model: ASRModel
    tokenizer: CharTokenizer
    lang: str
    info: Dict


def model_file(model: ASRModel, tokens: List[str], lang: str, info: Dict) -> dict:
    """Everything needed to run the model: config, vocabulary, language, weights (with CMVN stats)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return dict(format=MODEL_FORMAT, config=model.cfg.to_dict(), tokens=list(tokens), lang=lang,
                info=dict(info), state_dict=state)


def load_model_file(path: str, device: str = "cpu") -> LoadedModel:
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != MODEL_FORMAT:
        raise ASRError(f"{path}: not an asr model file (expected format {MODEL_FORMAT})")
    model = ASRModel(ModelConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    return LoadedModel(model, CharTokenizer.from_list(ckpt["tokens"]), ckpt["lang"], ckpt.get("info", {}))


def average_state_dicts(paths: List[str]) -> Dict[str, torch.Tensor]:
    """Element-wise mean of the model weights in several checkpoints (integer buffers taken from the last)."""
    total: Dict[str, torch.Tensor] = {}
    for path in paths:
        state = load_checkpoint(path)["state_dict"]
        for k, v in state.items():
            if v.is_floating_point():
                total[k] = total[k] + v.double() if k in total else v.double()
            else:
                total[k] = v
    return {k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in total.items()}
