"""Training the character language model (asr/lm.py) on text: transcripts of manifests and plain
text files, normalised as the recogniser's transcripts are and spelled with its vocabulary, so the
LM's ids are the model's. Each epoch reports the held-out text's per-character perplexity; the
file keeps the best epoch's weights."""
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .checkpoint import load_model_file, numerals_of
from .config import load_config
from .errors import ASRError
from .fileio import atomic_save, read_text_lines
from .inputs import MANIFEST_EXTENSIONS
from .lm import CharLM, LMConfig, lm_file
from .segments import load_manifest
from .text import IGNORE_ID, CharTokenizer, normalize_text

log = logging.getLogger(__name__)


@dataclass
class LMTrainConfig:
    lm: Dict = field(default_factory=dict, metadata={"schema": LMConfig})  # LMConfig fields
    epochs: int = 20
    max_minutes: float = 0.0  # stop before an epoch that would end past this (0 = no limit)
    batch_tokens: int = 4000  # characters per batch (sentences of similar length together)
    lr: float = 2e-3
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 0  # torch threads (0 = torch's default)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_tokens < 1 or self.lr <= 0:
            raise ASRError("epochs, batch_tokens and lr must be positive")
        self.lm_config(vocab_size=0)  # bad LM options fail here, before any training

    def lm_config(self, vocab_size: int) -> LMConfig:
        try:
            return LMConfig.from_dict({**self.lm, "vocab_size": vocab_size})
        except (TypeError, ValueError) as e:
            raise ASRError(f"bad language model options: {e}") from None


def lm_train_config(overrides: Sequence[str] = (), path: Optional[str] = None) -> LMTrainConfig:
    """LMTrainConfig from a YAML file (or the defaults) with KEY=VALUE overrides on top."""
    return load_config(path, overrides, LMTrainConfig)


def read_texts(path: str, lang: str, numerals: str = "keep") -> List[str]:
    """Normalised sentences: each utterance's text of a manifest (.jsonl), or each line of a text file."""
    if path.lower().endswith(MANIFEST_EXTENSIONS):
        texts = [s.text or "" for s in load_manifest(path)]
    else:
        texts = read_text_lines(path)
    return [t for t in (normalize_text(text, lang, numerals=numerals) for text in texts) if t]


def vocabulary_of(model_path: str) -> Tuple[CharTokenizer, str, str]:
    """The vocabulary, language and numeral spelling of a recogniser's model file, which the LM must share."""
    loaded = load_model_file(model_path)
    return loaded.tokenizer, loaded.lang, numerals_of(loaded.info)


def batches(sentences: List[List[int]], batch_tokens: int, rng: Optional[random.Random]) -> List[torch.Tensor]:
    """Padded batches of sentences of similar length, in random order when rng is given."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    groups, group, longest = [], [], 0
    for i in order:
        longest = max(longest, len(sentences[i]) + 1)
        if group and longest * (len(group) + 1) > batch_tokens:
            groups.append(group)
            group, longest = [], len(sentences[i]) + 1
        group.append(i)
    if group:
        groups.append(group)
    if rng is not None:
        rng.shuffle(groups)
    return [torch.nn.utils.rnn.pad_sequence([torch.tensor(sentences[i]) for i in g], batch_first=True,
                                            padding_value=IGNORE_ID) for g in groups]


@torch.no_grad()
def perplexity(lm: CharLM, data: List[torch.Tensor]) -> float:
    lm.eval()
    total = count = 0.0
    for tokens in data:
        loss, n = lm.loss(tokens)
        total, count = total + loss.item(), count + n.item()
    return math.exp(total / max(count, 1))


def train_lm(cfg: LMTrainConfig, train_texts: List[str], valid_texts: List[str], tokenizer: CharTokenizer,
             out_path: str, info: Optional[dict] = None) -> Dict:
    """Trains on `train_texts`, keeps the epoch with the lowest perplexity on `valid_texts`, writes the
    LM file to out_path; returns its info (perplexities, unknown characters, sizes)."""
    if not train_texts or not valid_texts:
        raise ASRError("the language model needs training text and held-out text, neither empty")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tokenizer.unknown_counts.clear()
    train_ids = [tokenizer.encode(t) for t in train_texts]
    unknown = dict(tokenizer.unknown_counts.most_common())
    valid = batches([tokenizer.encode(t) for t in valid_texts], cfg.batch_tokens, None)
    if unknown:
        log.info("characters outside the vocabulary (trained as <unk>): %s",
                 ", ".join(f"{c!r} x{n}" for c, n in list(unknown.items())[:10]))
    lm = CharLM(cfg.lm_config(len(tokenizer)))
    optimizer = torch.optim.AdamW(lm.parameters(), lr=cfg.lr, weight_decay=0.01)
    best, best_state, history, start = float("inf"), None, [], time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        lm.train()
        for tokens in batches(train_ids, cfg.batch_tokens, rng):
            loss, n = lm.loss(tokens)
            optimizer.zero_grad()
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(lm.parameters(), cfg.grad_clip)
            optimizer.step()
        ppl, minutes = perplexity(lm, valid), (time.perf_counter() - start) / 60
        history.append(dict(epoch=epoch, valid_perplexity=round(ppl, 4), minutes=round(minutes, 3)))
        log.info("lm epoch %d: valid perplexity %.3f (%.1f min)", epoch, ppl, minutes)
        if ppl < best:
            best, best_state = ppl, {k: v.clone() for k, v in lm.state_dict().items()}
        if cfg.max_minutes and minutes * (epoch + 1) / epoch > cfg.max_minutes:
            break
    lm.load_state_dict(best_state)
    info = dict(info or {}, config=asdict(cfg), valid_perplexity=round(best, 4), history=history,
                train_sentences=len(train_texts), train_characters=sum(map(len, train_ids)),
                valid_sentences=len(valid_texts), unknown_characters=unknown)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    atomic_save(lm_file(lm, tokenizer.tokens, info), out_path)
    return info
