"""Word times, found after the search: each token of the best hypothesis gets the encoder frames it
holds, and each word runs from its first token's first frame to the end of its last token's last frame.

Two sources of token frames (DecodingOptions.timestamps): the frame the decoder's cross-attention,
averaged over the alignment heads, peaked on when it emitted the token (one frame per token), or the
CTC head's forced alignment of the hypothesis (the frames each token holds in the best CTC path).
bench/timestamps.py measures both against word boundaries known exactly.

CTC's spikes come a little after a word starts and its last character before the word ends, so word
times may then be moved to the nearest edge of speech in the waveform (snap_to_speech), as
stable-ts does with silence."""
from itertools import groupby
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from .alignment import ctc_token_spans
from .chunking import window_energy
from .decode import DecodingResult
from .model import ASRModel
from .text import SPECIAL_TOKENS, writes_without_spaces

Span = Tuple[int, int]  # the first and last encoder frame a token holds
Word = Tuple[str, float, float]  # a word, its start and its end (s)


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
                     lang: str) -> List[Word]:
    """(word, start, end) for a hypothesis' tokens (characters, spaces as " ") with their start and end
    times: a word starts where its first token does and ends where its last does. Words are split at
    spaces; in a language written without them each character is a word. Special tokens (<unk>) are
    left out, as from the text."""
    timed = [(t, s, e) for t, s, e in zip(tokens, starts, ends) if t not in SPECIAL_TOKENS]
    if writes_without_spaces(lang):
        return [(t, s, e) for t, s, e in timed if not t.isspace()]
    words = (list(run) for spoken, run in groupby(timed, key=lambda x: not x[0].isspace()) if spoken)
    return [("".join(t for t, _, _ in run), run[0][1], run[-1][2]) for run in words]


MIN_PAUSE = 0.08  # s: shorter silences (a stop's closure inside a word) do not end speech
JOIN_MARGIN = 0.02  # s: how far outside the gap between two words' CTC times their meeting point may lie


class Speech(NamedTuple):
    """What word times snap to in a recording: its loudness (dB) in 25 ms windows centred at `times`
    (s, 10 ms apart), and where its runs of speech start and stop (find_speech)."""
    times: np.ndarray
    level: np.ndarray
    onsets: np.ndarray
    offsets: np.ndarray


def loudness(audio: np.ndarray, sample_rate: int) -> Tuple[np.ndarray, np.ndarray]:
    """The centres (s) and levels (dB) of 25 ms windows every 10 ms."""
    hop, width = sample_rate // 100, sample_rate // 40
    level = 10 * np.log10(window_energy(audio, hop, width) / width + 1e-10)
    return (np.arange(len(level)) * hop + width / 2) / sample_rate, level


def find_speech(audio: np.ndarray, sample_rate: int, above_floor_db: float) -> Speech:
    """The recording's loudness and where each run of speech starts and where it stops (s, 10 ms steps,
    sorted, alternating): a 25 ms window is speech when it is `above_floor_db` louder than the
    recording's quietest tenth of windows (its noise floor); pauses shorter than MIN_PAUSE join the runs
    on either side."""
    hop, width = sample_rate // 100, sample_rate // 40
    times, level = loudness(audio, sample_rate)
    speech = np.concatenate([[False], level > np.percentile(level, 10) + above_floor_db, [False]])
    change = np.flatnonzero(speech[1:] != speech[:-1])  # window i: the first speech or first silent one
    seconds = (change * hop + (width - hop) / 2) / sample_rate  # between the two windows' centres
    onsets, offsets = seconds[0::2], seconds[1::2]
    pause = onsets[1:] - offsets[:-1] >= MIN_PAUSE
    return Speech(times, level, np.concatenate([onsets[:1], onsets[1:][pause]]),
                  np.concatenate([offsets[:-1][pause], offsets[-1:]]))


def run_edges(onsets: np.ndarray, offsets: np.ndarray, times: np.ndarray, end: bool) -> np.ndarray:
    """For each time, the start (or, with `end`, the stop) of the speech run it lies in; from a pause,
    the nearest run's start after it (or stop before it). NaN where there is none."""
    edges = np.concatenate([offsets if end else onsets, [np.nan]])
    if end:
        k = np.searchsorted(offsets, times)  # the first run stopping at or after the time
        inside = (k < len(onsets)) & (times > onsets[np.minimum(k, len(onsets) - 1)])
        return np.where(inside, edges[k], edges[k - 1] if len(offsets) else np.nan)
    k = np.searchsorted(onsets, times, side="right") - 1  # the last run starting at or before the time
    inside = (k >= 0) & (times < offsets[np.maximum(k, 0)])
    return np.where(inside, edges[k], edges[np.minimum(k + 1, len(onsets))])


def snap_words(words: Sequence[Word], speech: Speech, max_shift: float) -> List[Word]:
    """Neighbours first meet at the quietest moment between them, then each word's outer edges move to
    the edges of the speech it lies in."""
    return snap_to_speech(meet_at_quietest(words, speech.times, speech.level), speech.onsets, speech.offsets,
                          max_shift)


def meet_at_quietest(words: Sequence[Word], times: np.ndarray, level: np.ndarray) -> List[Word]:
    """Each word's end and the next word's start moved to one time: the quietest window between the two
    (within JOIN_MARGIN outside them), kept inside both words. CTC ends a word early and starts the next
    late; where no pause parts them, snapping to the edges of speech cannot help, and the quietest
    moment between them is where one gives way to the other (on fsdd_connected dev it halved the 95th
    percentile of boundary errors, bench/timestamps.py)."""
    words = list(words)
    for i in range(len(words) - 1):
        (word, start, end), (after, next_start, next_end) = words[i], words[i + 1]
        low, high = sorted((end, next_start))
        between = np.flatnonzero((times >= low - JOIN_MARGIN) & (times <= high + JOIN_MARGIN))
        if len(between):
            meet = min(max(float(times[between[np.argmin(level[between])]]), start), next_end)
            words[i], words[i + 1] = (word, start, meet), (after, meet, next_end)
    return words


def snap_to_speech(words: Sequence[Word], onsets: np.ndarray, offsets: np.ndarray, max_shift: float) -> List[Word]:
    """A word's start moved to the start of the speech run it begins in (or, begun in a pause, to the
    next run's start), its end to the stop of the run it ends in (or the last stop before it), where
    that is within max_shift seconds and crosses neither a neighbour nor the word's other end: a run
    holding several words (speech without a pause between them) leaves the times inside it as they
    were, and so does a word lying wholly in a pause. Words stay in order."""
    if not words or not len(onsets):
        return list(words)
    starts, ends = np.array([w[1] for w in words]), np.array([w[2] for w in words])
    after = np.concatenate([[-np.inf], ends[:-1]])  # a start may not move before the previous word's end
    before = np.concatenate([starts[1:], [np.inf]])  # nor an end past the next word's start
    to_start, to_end = run_edges(onsets, offsets, starts, end=False), run_edges(onsets, offsets, ends, end=True)
    near_start = (np.abs(to_start - starts) <= max_shift) & (to_start >= after) & (to_start < ends)
    near_end = (np.abs(to_end - ends) <= max_shift) & (to_end <= before) & (to_end > starts)
    starts, ends = np.where(near_start, to_start, starts), np.where(near_end, to_end, ends)
    starts = np.maximum(starts, np.concatenate([[0.0], ends[:-1]]))
    return [(w[0], float(s), float(e)) for w, s, e in zip(words, starts, np.maximum(ends, starts))]
