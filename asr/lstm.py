"""The classic attention encoder-decoder (Chan et al.'s Listen, Attend and Spell; Luong et al.'s
attention with input feeding), as `model.arch: lstm`: a bidirectional LSTM encoder over the
subsampled features and an LSTM decoder that attends to it once per character, dot-product or
location-aware. It has the Transformer decoder's interface (a teacher-forced forward, init_cache,
step and a cache that reorders with the beams), so training, the CTC head and the beam search are
the same code for both, and the Transformer's advantage is measured rather than asserted."""
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .layers import ConvSubsampler, Dropout, lengths_to_padding_mask

if TYPE_CHECKING:
    from .model import ModelConfig


class LSTMEncoder(nn.Module):
    """The subsampler, then encoder_layers bidirectional LSTMs of d_model / 2 units each way."""

    def __init__(self, cfg: "ModelConfig"):
        super().__init__()
        self.subsample = ConvSubsampler(cfg.features.n_mels, cfg.d_model, cfg.conv_channels, cfg.subsampling)
        self.dropout = Dropout(cfg.dropout)
        self.lstm = nn.LSTM(cfg.d_model, cfg.d_model // 2, cfg.encoder_layers, batch_first=True, bidirectional=True,
                            dropout=cfg.dropout if cfg.encoder_layers > 1 else 0.0)
        self.ln = nn.LayerNorm(cfg.d_model)

    def forward(self, feats: Tensor, lengths: Tensor, ctc_head: Optional[nn.Module] = None,
                window: Optional[int] = None) -> Tuple[Tensor, Tensor, None]:
        """As the Transformer encoder's, which has intermediate CTC and positions; this one has neither,
        so it reads every input whole (`window` is ignored)."""
        x, lengths = self.subsample(feats, lengths)
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(x), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.ln(x), lengths, None


@dataclass
class LSTMState:
    """A decoding state per hypothesis: each layer's (h, c), the last attention context and weights,
    and the encoder output's attention keys and values with its mask."""
    h: List[Tensor]  # per layer [N, D]
    c: List[Tensor]
    context: Tensor  # [N, D]
    previous: Tensor  # [N, T]: the last step's attention weights (location-aware attention reads them)
    keys: Tensor  # [N, T, D]
    values: Tensor  # [N, T, D]
    memory_mask: Tensor  # [N, T] True = a real frame
    length: int = 0

    def reorder(self, index: Tensor, same_memory: bool = False) -> "LSTMState":
        """Keeps rows `index` (each survivor of a beam step continues from its parent's state); with
        same_memory (the beams of one utterance) the encoder keys and values are kept, not copied."""
        pick = lambda ts: [t.index_select(0, index) for t in ts]  # noqa: E731
        memory = (self.keys, self.values, self.memory_mask) if same_memory else pick(
            [self.keys, self.values, self.memory_mask])
        return LSTMState(pick(self.h), pick(self.c), self.context.index_select(0, index),
                         self.previous.index_select(0, index), *memory, self.length)


class LSTMDecoder(nn.Module):
    """decoder_layers LSTM cells fed the previous character and the previous attention context; the
    top cell's output queries the encoder (scaled dot product, plus with location_kernel > 0 the
    previous weights convolved, as in Chorowski et al. 2015), and [output; context] predicts the next
    character. One attention "head" in one "layer", so alignment heads and the window work as ever."""

    def __init__(self, cfg: "ModelConfig"):
        super().__init__()
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.cells = nn.ModuleList(nn.LSTMCell(2 * d if i == 0 else d, d) for i in range(cfg.decoder_layers))
        self.query, self.key = nn.Linear(d, d), nn.Linear(d, d)
        self.location = (nn.Conv1d(1, 1, cfg.location_kernel, padding=cfg.location_kernel // 2, bias=False)
                         if cfg.location_kernel else None)
        if self.location is not None:
            nn.init.zeros_(self.location.weight)  # training starts from plain dot-product attention
        self.combine = nn.Linear(2 * d, d)
        self.dropout = Dropout(cfg.dropout)
        self.out = nn.Linear(d, cfg.vocab_size)
        self.scale = d ** -0.5

    attention_heads = (1, 1)  # (layers, heads) of cross-attention, the shape of ASRModel.alignment_heads

    def init_cache(self, memory: Tensor, memory_lengths: Tensor, max_len: int = 0) -> LSTMState:
        n, t, d = memory.shape
        zeros = memory.new_zeros(n, d)
        mask = ~lengths_to_padding_mask(memory_lengths, t)
        return LSTMState([zeros] * len(self.cells), [zeros] * len(self.cells), zeros, memory.new_zeros(n, t),
                         self.key(memory), memory, mask)

    def step(self, tokens: Tensor, cache: LSTMState, cross_mask: Optional[Tensor] = None,
             need_weights: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """One step for N hypotheses: tokens [N] -> logits [N, V] and attention weights [N, 1, 1, T];
        `cross_mask` ([N, T], True = allowed) narrows attention on top of padding. Advances `cache`."""
        x = torch.cat([self.dropout(self.embed(tokens)), cache.context], dim=-1)
        for i, cell in enumerate(self.cells):
            cache.h[i], cache.c[i] = cell(x, (cache.h[i], cache.c[i]))
            x = self.dropout(cache.h[i])
        scores = torch.einsum("nd,ntd->nt", self.query(x), cache.keys) * self.scale
        if self.location is not None:
            scores = scores + self.location(cache.previous[:, None])[:, 0]
        mask = cache.memory_mask if cross_mask is None else cache.memory_mask & cross_mask
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        cache.context = torch.einsum("nt,ntd->nd", weights, cache.values)
        cache.previous, cache.length = weights, cache.length + 1
        hidden = torch.tanh(self.combine(torch.cat([x, cache.context], dim=-1)))
        return self.out(self.dropout(hidden)), weights[:, None, None] if need_weights else None

    def forward(self, tokens: Tensor, memory: Tensor, memory_lengths: Tensor,
                need_weights: bool = False) -> Tuple[Tensor, List[Optional[Tensor]]]:
        """Teacher forcing, one position at a time (the recurrence allows no other way): logits
        [B, L, V] and the attention weights [B, 1, L, T] (when asked) as the only layer's."""
        state = self.init_cache(memory, memory_lengths)
        steps = [self.step(tokens[:, i], state, need_weights=need_weights) for i in range(tokens.shape[1])]
        logits = torch.stack([s[0] for s in steps], dim=1)
        weights = torch.stack([s[1][:, 0] for s in steps], dim=2) if need_weights else None  # [B, 1, L, T]
        return logits, [weights]
