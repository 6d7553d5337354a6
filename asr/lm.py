"""A character language model for shallow fusion: the beam search adds β · log P_LM(next character)
to each extension's score, so a recogniser trained on a few hours of speech can lean on how words
are spelled in far more text than its transcripts.

An LSTM over the recogniser's own vocabulary (the same tokens.txt ids): a sentence starts after
<sos/eos> and ends by predicting it. The model knows tensors only: asr/train_lm.py writes LM files,
asr/transcribe.py reads them (with weights_only=True, as model files are read)."""
from dataclasses import asdict, dataclass, fields
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ASRError
from .text import IGNORE_ID, SOS_EOS, SPECIAL_TOKENS

LM_FILE_KIND = "asr-char-lm"
LMState = Tuple[Tensor, Tensor]  # the LSTM's (h, c), each [layers, N, hidden]


@dataclass
class LMConfig:
    vocab_size: int = 0
    embed_dim: int = 128
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.2

    def __post_init__(self):
        for name in ("embed_dim", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown language model options: {', '.join(sorted(unknown))}")
        return cls(**d)


class CharLM(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        if cfg.vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError("vocab_size must include the special tokens and at least one character")
        self.cfg = cfg
        self.sos_eos = SPECIAL_TOKENS.index(SOS_EOS)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden, cfg.layers, batch_first=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, cfg.vocab_size)

    def forward(self, inputs: Tensor, state: Optional[LMState] = None) -> Tuple[Tensor, LMState]:
        """inputs [N, L] -> logits [N, L, V] and the state after the last position."""
        x, state = self.lstm(self.dropout(self.embed(inputs)), state)
        return self.out(self.dropout(x)), state

    def loss(self, tokens: Tensor) -> Tuple[Tensor, Tensor]:
        """Summed cross-entropy of sentences `tokens` [N, L] (padded with IGNORE_ID), EOS included,
        and the number of predicted tokens."""
        n = tokens.shape[0]
        lengths = (tokens != IGNORE_ID).sum(dim=1)
        inputs = torch.cat([tokens.new_full((n, 1), self.sos_eos), tokens.clamp(min=0)], dim=1)
        targets = torch.cat([tokens, tokens.new_full((n, 1), IGNORE_ID)], dim=1)
        targets[torch.arange(n), lengths] = self.sos_eos
        logits, _ = self(inputs)
        total = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_ID, reduction="sum")
        return total, (targets != IGNORE_ID).sum()

    def step(self, tokens: Tensor, state: Optional[LMState]) -> Tuple[Tensor, LMState]:
        """One token per hypothesis [N] -> next-token log-probabilities [N, V] and the new state."""
        logits, state = self(tokens[:, None], state)
        return logits[:, 0].float().log_softmax(dim=-1), state

    def start(self, n: int, device: torch.device) -> Tuple[Tensor, LMState]:
        """The first step of n hypotheses: log-probabilities of their first token after <sos/eos>."""
        return self.step(torch.full((n,), self.sos_eos, dtype=torch.long, device=device), None)


def reorder_state(state: LMState, index: Tensor) -> LMState:
    return state[0].index_select(1, index), state[1].index_select(1, index)


def lm_file(lm: CharLM, tokens: List[str], info: dict) -> dict:
    """What an LM file holds: plain types and tensors, so it loads with weights_only=True."""
    return dict(kind=LM_FILE_KIND, config=asdict(lm.cfg), tokens=list(tokens),
                state_dict={k: v.detach().cpu() for k, v in lm.state_dict().items()}, info=info)


def lm_from_file(data: dict, path: str) -> Tuple[CharLM, List[str], dict]:
    """The LM, its vocabulary and its info from what lm_file wrote (read by the caller)."""
    if not isinstance(data, dict) or data.get("kind") != LM_FILE_KIND:
        raise ASRError(f"{path}: not a language model file of this toolkit (asr train-lm writes them)")
    try:
        lm = CharLM(LMConfig.from_dict(data["config"]))
        lm.load_state_dict(data["state_dict"])
        tokens = list(data["tokens"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ASRError(f"{path}: a damaged language model file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return lm.eval(), tokens, dict(data.get("info", {}))


def check_vocabulary(lm_tokens: List[str], model_tokens: List[str], path: str) -> None:
    """Shallow fusion adds scores id by id: the LM must have been trained on the model's vocabulary."""
    if list(lm_tokens) != list(model_tokens):
        differ = next((i for i, (a, b) in enumerate(zip(lm_tokens, model_tokens)) if a != b),
                      min(len(lm_tokens), len(model_tokens)))
        raise ASRError(f"{path}: the language model's vocabulary ({len(lm_tokens)} tokens) is not the model's "
                       f"({len(model_tokens)}; they differ from id {differ}): train it with --model of this model")
