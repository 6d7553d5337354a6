"""Word times, found after the search: each token of the best hypothesis gets the encoder frames it
holds, and each word runs from its first token's first frame to the end of its last token's last frame.

Two sources of token frames (DecodingOptions.timestamps): the frame the decoder's cross-attention,
averaged over the alignment heads, peaked on when it emitted the token (one frame per token), or the
CTC head's forced alignment of the hypothesis (the frames each token holds in the best CTC path).
bench/timestamps.py measures both against word boundaries known exactly."""
from itertools import groupby
from typing import List, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from .alignment import ctc_token_spans
from .decode import DecodingResult
from .model import ASRModel
from .text import SPECIAL_TOKENS, writes_without_spaces

Span = Tuple[int, int]  # the first and last encoder frame a token holds


def token_spans(model: ASRModel, memory: Tensor, memory_lengths: Tensor, results: Sequence[DecodingResult],
                source: str) -> List[List[Span]]:
    """Per result, the frames each of its tokens holds. "attention": the attended frame, never before
    the previous token's (a decoder glancing back does not make time run backwards). "ctc": the CTC
    head's best path for the hypothesis, batched over utterances; attention's where no path fits (a
    hypothesis needing more frames than there are) or the head was never trained (ctc_loss_weight 0)."""
    lengths = torch.tensor([len(r.tokens) for r in results])
    attended = pad_sequence([torch.tensor(r.frames, dtype=torch.long) for r in results], batch_first=True)
    first = last = attended.cummax(dim=1).values
    if source == "ctc" and model.cfg.ctc_loss_weight > 0:
        tokens = pad_sequence([torch.tensor(r.tokens, dtype=torch.long) for r in results], batch_first=True,
                              padding_value=-1)
        ctc_first, ctc_last, feasible = (x.cpu() for x in ctc_token_spans(
            model.ctc_log_probs(memory), memory_lengths, tokens.to(memory.device), lengths.to(memory.device),
            model.blank))
        first = torch.where(feasible[:, None], ctc_first, first)
        last = torch.where(feasible[:, None], ctc_last, last)
    return [list(zip(f[:n], l[:n])) for f, l, n in zip(first.tolist(), last.tolist(), lengths.tolist())]


def words_with_times(tokens: Sequence[str], starts: Sequence[float], ends: Sequence[float],
                     lang: str) -> List[Tuple[str, float, float]]:
    """(word, start, end) for a hypothesis' tokens (characters, spaces as " ") with their start and end
    times: a word starts where its first token does and ends where its last does. Words are split at
    spaces; in a language written without them each character is a word. Special tokens (<unk>) are
    left out, as from the text."""
    timed = [(t, s, e) for t, s, e in zip(tokens, starts, ends) if t not in SPECIAL_TOKENS]
    if writes_without_spaces(lang):
        return [(t, s, e) for t, s, e in timed if not t.isspace()]
    words = (list(run) for spoken, run in groupby(timed, key=lambda x: not x[0].isspace()) if spoken)
    return [("".join(t for t, _, _ in run), run[0][1], run[-1][2]) for run in words]
