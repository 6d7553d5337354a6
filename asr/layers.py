"""The layers the recognisers are built of: padding masks, sinusoidal positions, the convolutional
subsampler, a fast CPU dropout, multi-head and location-aware attention, the feed-forward and
Conformer convolution modules."""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def lengths_to_padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """True where a position is padding, shape [B, max_len]."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def sinusoids(length: int, channels: int) -> Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, channels, 2, dtype=torch.float32) / channels)
    pe = torch.zeros(length, channels)
    pe[:, 0::2] = torch.sin(position * inv_freq)
    pe[:, 1::2] = torch.cos(position * inv_freq)
    return pe


class ConvSubsampler(nn.Module):
    """2-D convolutions over (time, mel), each striding time and frequency, then a projection to d_model.

    The convolutions are padded ("same"-style), so T frames become ceil(T / factor): a short word
    keeps enough encoder frames for CTC to spell it (unpadded, 0.3 s of "three" would leave 6 frames
    for the 6 that t-h-r-e-blank-e needs). Frames past each utterance's length are zeroed before every
    convolution, so a padded batch gives each item what it would get alone."""

    # (kernel, stride) per convolution for each subsampling factor
    LAYOUTS = {4: [(3, 2), (3, 2)], 6: [(3, 2), (5, 3)], 8: [(3, 2), (3, 2), (3, 2)]}

    def __init__(self, n_mels: int, d_model: int, channels: int, factor: int):
        super().__init__()
        if factor not in self.LAYOUTS:
            raise ValueError(f"subsampling must be one of {sorted(self.LAYOUTS)}, got {factor}")
        self.layout = self.LAYOUTS[factor]
        self.convs, in_ch, freq = nn.ModuleList(), 1, n_mels
        for kernel, stride in self.layout:
            self.convs.append(nn.Conv2d(in_ch, channels, kernel, stride, padding=kernel // 2))
            in_ch, freq = channels, -(-freq // stride)
        self.out = nn.Linear(channels * freq, d_model)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for _, stride in self.layout:
            lengths = -torch.div(-lengths, stride, rounding_mode="floor")  # ceil
        return lengths

    def forward(self, feats: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        x = feats.unsqueeze(1)  # [B, 1, T, F]
        for conv, (_, stride) in zip(self.convs, self.layout):
            x = x.masked_fill(lengths_to_padding_mask(lengths, x.shape[2])[:, None, :, None], 0.0)
            x = torch.relu(conv(x))
            lengths = -torch.div(-lengths, stride, rounding_mode="floor")
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), lengths


class Dropout(nn.Module):
    """Dropout whose CPU mask comes from random bytes, eight per 64-bit draw, instead of one Bernoulli
    draw per element: torch's CPU bernoulli_ took 18 % of the small preset's training step, this a
    third of that. p is rounded to a multiple of 1/256 (0.1 -> 0.1016) and the kept values scaled by
    1 / (1 - that). On other devices it is torch's fused dropout."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.threshold = round(p * 256)
        self.scale = 256.0 / (256 - self.threshold) if self.threshold < 256 else 0.0

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        words = torch.randint(-2 ** 63, 2 ** 63 - 1, (-(-x.numel() // 8),), dtype=torch.int64)
        keep = words.view(torch.uint8)[: x.numel()].view(x.shape) >= self.threshold
        return torch.where(keep, x * self.scale, 0.0)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = Dropout(dropout)

    def split_heads(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

    def project_key_value(self, source: Tensor) -> Tuple[Tensor, Tensor]:
        k, v = self.key_value(source).chunk(2, dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def attend(self, x: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor] = None,
               is_causal: bool = False, need_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """mask: bool, True = may attend, broadcastable to [B, H, Lq, Lk]. The fused kernel serves
        unless the weights are returned, or dropped out on the CPU (where torch's kernel computes them
        one by one anyway, and Dropout draws their mask faster)."""
        q = self.split_heads(self.query(x))
        weights = None
        dropping = self.training and self.dropout.p > 0
        if need_weights or (dropping and q.device.type == "cpu"):
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            if is_causal:
                causal = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
                mask = causal if mask is None else mask & causal
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = scores.softmax(dim=-1)
            out = self.dropout(probs) @ v
            weights = probs if need_weights else None
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                                 dropout_p=self.dropout.p if dropping else 0.0)
        return self.merge_heads(out), weights

    def merge_heads(self, out: Tensor) -> Tensor:
        b, h, t, dk = out.shape
        return self.out(out.transpose(1, 2).reshape(b, t, h * dk))


class LocationAwareAttention(MultiHeadAttention):
    """Cross-attention that also knows where the previous query looked (Chorowski et al., 2015): that
    query's content-only attention, convolved over frames per head, is added to the logits. Taking the
    content-only attention keeps a teacher-forced pass free of a recurrence over queries (still one
    batched pass), and the same quantity is cached step by step when decoding. The convolution
    starts at zero, so training starts from plain attention."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, kernel: int):
        super().__init__(d_model, n_heads, dropout)
        self.location = nn.Conv1d(n_heads, n_heads, kernel, padding=kernel // 2, groups=n_heads, bias=False)
        nn.init.zeros_(self.location.weight)

    def attend_located(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor,
                       previous: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """previous: [B, H, T], the content attention of the query before x's one query (a decoding
        step); None when x holds every query, each following the one before it (the first follows
        none). Returns the output, the attention [B, H, L, T] and its content-only part."""
        q = self.split_heads(self.query(x))
        scores = ((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])).masked_fill(~mask, float("-inf"))
        content = scores.softmax(dim=-1)
        before = F.pad(content[:, :, :-1], (0, 0, 1, 0)) if previous is None else previous[:, :, None]
        b, h, queries, t = before.shape
        location = self.location(before.transpose(1, 2).reshape(b * queries, h, t))
        probs = (scores + location.view(b, queries, h, t).transpose(1, 2)).softmax(dim=-1)
        return self.merge_heads(self.dropout(probs) @ v), probs, content


def feed_forward(d_model: int, d_ff: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), Dropout(dropout), nn.Linear(d_ff, d_model))


class ConvModule(nn.Module):
    """Conformer's convolution module (pre-LN, pointwise + GLU, depthwise, LayerNorm + Swish, pointwise):
    local patterns such as formant movements, which self-attention learns slowly from little data.
    Padded frames are zeroed before the depthwise convolution, so a batch gives each item what it
    would get alone. LayerNorm rather than BatchNorm: batches here are small and padded."""

    def __init__(self, d_model: int, kernel: int, dropout: float):
        super().__init__()
        self.ln = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x [B, T, D], valid [B, T] (True = a real frame)."""
        h = F.glu(self.pointwise_in(self.ln(x)), dim=-1).masked_fill(~valid[..., None], 0.0)
        h = self.depthwise(h.transpose(1, 2)).transpose(1, 2)
        return self.pointwise_out(F.silu(self.norm(h)))
