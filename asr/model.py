"""The recogniser: log-mel front end -> conv subsampler -> Transformer encoder -> character
decoder with cross-attention, plus a CTC head on the encoder.

The model knows tensors only: no files, corpora or command line."""
import math
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .alignment import ctc_forced_align, diagonal_frames, guided_attention_penalty, query_frames
from .features import FeatureConfig, GlobalCMVN, LogMel, SpecAugment, SpecAugmentConfig, utterance_mean_normalize
from .layers import (ConvModule, ConvSubsampler, Dropout, LocationAwareAttention, MultiHeadAttention, feed_forward,
                     lengths_to_padding_mask, sinusoids)
from .lstm import LSTMDecoder, LSTMEncoder
from .scheduled_sampling import ScheduledSamplingConfig, mix_predictions
from .text import BLANK, IGNORE_ID, SOS_EOS, SPECIAL_TOKENS


@dataclass
class ModelConfig:
    # "transformer", or "lstm": the classic encoder-decoder (asr/lstm.py) of the same d_model and layer
    # counts, a baseline to measure the Transformer against (n_heads, d_ff and conv_kernel unused)
    arch: str = "transformer"
    vocab_size: int = 0
    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    encoder_layers: int = 6
    decoder_layers: int = 3
    subsampling: int = 4  # 4, 6 or 8
    conv_channels: int = 64  # channels of the subsampler's convolutions (cost grows with its square)
    dropout: float = 0.1
    # > 0: each encoder block gets a Conformer convolution module with a depthwise kernel this wide (odd)
    conv_kernel: int = 0
    # > 0: location-aware cross-attention; the previous decoder query's attention, convolved over this many
    # encoder frames (odd), is added to each head's logits
    location_kernel: int = 0
    ctc_loss_weight: float = 0.3  # λ of the training loss (1 − λ)·attention + λ·CTC
    # > 0: intermediate CTC (Lee & Watanabe 2021): the CTC head also reads the middle encoder block's
    # output, and the CTC loss is (1 − w)·final + w·middle, a regulariser of the lower blocks; 0 = off
    # (the loss as without it). Transformer encoder only. No gain on speechocean762 (BENCHMARKS.md)
    intermediate_ctc_weight: float = 0.0
    # with intermediate CTC: the middle block's CTC posteriors, projected to d_model, are added to its
    # output (self-conditioned CTC, Nozaki & Komatsu 2021), so the upper blocks refine a first guess;
    # in decoding too
    self_conditioning: bool = False
    label_smoothing: float = 0.1
    utterance_cmn: bool = False  # also subtract each utterance's own mean (channel normalisation)
    max_positions: int = 5000
    # Guided attention (training only): a penalty on cross-attention mass far from the expected
    # alignment path, per decoder query in [0, 1], added to the loss
    guided_attention_weight: float = 0.0  # weight of the penalty; 0 = off (the loss as without it)
    guided_attention_sigma: float = 3.0  # width of the path in encoder frames
    guided_attention_path: str = "ctc"  # "ctc": the CTC head's best alignment of the reference; "diagonal"
    guided_attention_decay_steps: int = 0  # the weight halves every this many optimiser steps; 0 = constant
    features: FeatureConfig = field(default_factory=FeatureConfig)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    # training only: the decoder also learns from inputs that hold its own predictions (off by default)
    scheduled_sampling: ScheduledSamplingConfig = field(default_factory=ScheduledSamplingConfig)

    RENAMED: ClassVar[Dict[str, str]] = {"ctc_weight": "ctc_loss_weight"}  # old name -> new, still read
    GUIDED_PATHS: ClassVar[Tuple[str, ...]] = ("ctc", "diagonal")
    ARCHS: ClassVar[Tuple[str, ...]] = ("transformer", "lstm")

    def __post_init__(self):
        if self.arch not in self.ARCHS:
            raise ValueError(f"arch must be one of {', '.join(self.ARCHS)}, got {self.arch!r}")
        if self.arch == "lstm" and self.d_model % 2:
            raise ValueError(f"arch 'lstm' needs an even d_model (half per direction), got {self.d_model}")
        if self.conv_kernel < 0 or (self.conv_kernel and self.conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel must be 0 (off) or an odd width in frames, got {self.conv_kernel}")
        if self.location_kernel < 0 or (self.location_kernel and self.location_kernel % 2 == 0):
            raise ValueError(f"location_kernel must be 0 (off) or an odd width in frames, got {self.location_kernel}")
        if self.guided_attention_weight < 0:
            raise ValueError(f"guided_attention_weight must be >= 0, got {self.guided_attention_weight}")
        if self.guided_attention_sigma <= 0:
            raise ValueError(f"guided_attention_sigma must be > 0 (encoder frames), got {self.guided_attention_sigma}")
        if self.guided_attention_path not in self.GUIDED_PATHS:
            raise ValueError(f"guided_attention_path must be one of {', '.join(self.GUIDED_PATHS)}, "
                             f"got {self.guided_attention_path!r}")
        if self.guided_attention_decay_steps < 0:
            raise ValueError(f"guided_attention_decay_steps must be >= 0, got {self.guided_attention_decay_steps}")
        if not 0.0 <= self.intermediate_ctc_weight < 1.0:
            raise ValueError(f"intermediate_ctc_weight must be in [0, 1), got {self.intermediate_ctc_weight}")
        if self.intermediate_ctc_weight > 0 and (self.arch != "transformer" or self.encoder_layers < 2):
            raise ValueError("intermediate_ctc_weight needs the transformer encoder with at least 2 layers")
        if self.self_conditioning and self.intermediate_ctc_weight == 0:
            raise ValueError("self_conditioning needs intermediate_ctc_weight > 0")
        if self.guided_attention_weight > 0 and self.guided_attention_path == "ctc" and self.ctc_loss_weight == 0:
            raise ValueError("guided_attention_path 'ctc' needs ctc_loss_weight > 0: "
                             "with 0 the CTC head is never trained, so its alignment means nothing")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = {cls.RENAMED.get(k, k): v for k, v in d.items()}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model options: {', '.join(sorted(unknown))}")
        if isinstance(d.get("features"), dict):
            d["features"] = FeatureConfig(**d["features"])
        if isinstance(d.get("specaugment"), dict):
            d["specaugment"] = SpecAugmentConfig(**d["specaugment"])
        if isinstance(d.get("scheduled_sampling"), dict):
            d["scheduled_sampling"] = ScheduledSamplingConfig(**d["scheduled_sampling"])
        return cls(**d)


# Named sizes. `base` matches ESPnet's 12-encoder/6-decoder d=256 Transformer.
PRESETS: Dict[str, dict] = {
    "tiny": dict(d_model=64, n_heads=2, d_ff=128, encoder_layers=2, decoder_layers=1, conv_channels=8),
    "small": dict(d_model=144, n_heads=4, d_ff=576, encoder_layers=6, decoder_layers=3, conv_channels=32),
    # twice small's parameters: for a CPU budget longer than small can use (see BENCHMARKS.md)
    "medium": dict(d_model=192, n_heads=4, d_ff=768, encoder_layers=8, decoder_layers=3, conv_channels=64),
    "espnet6x3": dict(d_model=256, n_heads=4, d_ff=2048, encoder_layers=6, decoder_layers=3, conv_channels=256),
    "base": dict(d_model=256, n_heads=4, d_ff=2048, encoder_layers=12, decoder_layers=6, conv_channels=256),
}


class EncoderBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, conv_kernel: int = 0):
        super().__init__()
        self.attn_ln, self.attn = nn.LayerNorm(d_model), MultiHeadAttention(d_model, n_heads, dropout)
        self.conv = ConvModule(d_model, conv_kernel, dropout) if conv_kernel else None
        self.ff_ln, self.ff = nn.LayerNorm(d_model), feed_forward(d_model, d_ff, dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.attn_ln(x)
        k, v = self.attn.project_key_value(h)
        x = x + self.dropout(self.attn.attend(h, k, v, mask)[0])
        if self.conv is not None:
            x = x + self.dropout(self.conv(x, mask[:, 0, 0, :]))
        return x + self.dropout(self.ff(self.ff_ln(x)))


class BlockStack(nn.Module):
    """What the encoder and decoder share: inputs scaled by sqrt(d_model) plus sinusoidal positions,
    dropout, a stack of blocks and a final LayerNorm. Built after each one's own input layer, so
    parameters are created (and randomly initialised) in the same order as ever."""

    def add_stack(self, cfg: ModelConfig, block: type, layers: int, **block_options) -> None:
        self.register_buffer("positions", sinusoids(cfg.max_positions, cfg.d_model), persistent=False)
        self.scale = math.sqrt(cfg.d_model)
        self.dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(block(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, **block_options)
                                    for _ in range(layers))
        self.ln = nn.LayerNorm(cfg.d_model)

    def with_positions(self, x: Tensor, offset: int = 0) -> Tensor:
        return self.dropout(x * self.scale + self.positions[offset: offset + x.shape[1]])


class Encoder(BlockStack):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.subsample = ConvSubsampler(cfg.features.n_mels, cfg.d_model, cfg.conv_channels, cfg.subsampling)
        self.add_stack(cfg, EncoderBlock, cfg.encoder_layers, conv_kernel=cfg.conv_kernel)
        # intermediate CTC reads the output of this many blocks (the middle), through the final LayerNorm
        self.intermediate_layer = cfg.encoder_layers // 2 if cfg.intermediate_ctc_weight > 0 else None
        self.condition = nn.Linear(cfg.vocab_size, cfg.d_model) if cfg.self_conditioning else None

    def forward(self, feats: Tensor, lengths: Tensor, ctc_head: Optional[nn.Module] = None,
                window: Optional[int] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Encoder output [B, T, D], its lengths and, given the CTC head and with intermediate CTC on,
        the middle block's CTC log-probabilities [B, T, V] (else None). With `window`, inputs longer
        than that many frames are encoded in overlapping windows of it (see `windowed`)."""
        x, lengths = self.subsample(feats, lengths)
        if window and x.shape[1] > window:
            return self.windowed(x, lengths, ctc_head, window)
        return self.run_blocks(x, lengths, ctc_head)

    def windowed(self, x: Tensor, lengths: Tensor, ctc_head: Optional[nn.Module],
                 window: int) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """The blocks run over windows of `window` frames, one starting every window // 2 (all of them
        one batch), and each output frame comes from the window whose middle half holds it: a recording
        far longer than any training utterance meets only the positions and the attention span the
        encoder learnt, each frame still with a quarter window of context on either side."""
        b, t, d = x.shape
        step = window // 2
        k = torch.arange((t + step - 1) // step, device=x.device)
        latest = (lengths[:, None] - window).clamp(min=0)  # the last window ends with the utterance
        starts = torch.minimum((k * step - (window - step) // 2).clamp(min=0)[None, :], latest)  # [B, n]
        frames = (starts[..., None] + torch.arange(window, device=x.device)).clamp(max=t - 1)  # [B, n, W]
        pieces = x.gather(1, frames.view(b, -1, 1).expand(-1, -1, d)).view(-1, window, d)
        piece_lengths = (lengths[:, None] - starts).clamp(1, window).view(-1)  # never an empty window
        y, _, intermediate = self.run_blocks(pieces, piece_lengths, ctc_head)
        own = torch.arange(t, device=x.device) // step  # the window each frame is taken from
        offset = (torch.arange(t, device=x.device) - starts[:, own]).clamp(0, window - 1)  # [B, T]
        flat = (torch.arange(b, device=x.device)[:, None] * len(k) + own) * window + offset
        back = lambda z: z.reshape(-1, z.shape[-1])[flat]  # noqa: E731
        return back(y), lengths, None if intermediate is None else back(intermediate)

    def run_blocks(self, x: Tensor, lengths: Tensor,
                   ctc_head: Optional[nn.Module]) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        x = self.with_positions(x)
        mask = ~lengths_to_padding_mask(lengths, x.shape[1])[:, None, None, :]
        intermediate = None
        for i, block in enumerate(self.blocks, start=1):
            x = block(x, mask)
            if i == self.intermediate_layer and ctc_head is not None:
                intermediate = ctc_head(self.ln(x)).log_softmax(dim=-1)
                if self.condition is not None:
                    x = x + self.condition(intermediate.exp())
        return self.ln(x), lengths, intermediate


class DecoderBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, location_kernel: int = 0):
        super().__init__()
        self.self_ln, self.self_attn = nn.LayerNorm(d_model), MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_ln = nn.LayerNorm(d_model)
        self.cross_attn = (LocationAwareAttention(d_model, n_heads, dropout, location_kernel) if location_kernel
                           else MultiHeadAttention(d_model, n_heads, dropout))
        self.ff_ln, self.ff = nn.LayerNorm(d_model), feed_forward(d_model, d_ff, dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, cross_kv: Tuple[Tensor, Tensor], cross_mask: Tensor,
                cache: Optional[Tuple[Tensor, Tensor, int]] = None, need_weights: bool = False,
                previous: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Without `cache`, a causal pass over the whole prefix; with (keys, values, position), one step
        that writes this position's keys/values into the preallocated buffers. Location-aware
        cross-attention also returns its content-only attention (None otherwise), which the next step
        takes as `previous`."""
        h = self.self_ln(x)
        k, v = self.self_attn.project_key_value(h)
        if cache is not None:
            keys, values, t = cache
            keys[:, :, t: t + 1], values[:, :, t: t + 1] = k, v
            k, v = keys[:, :, : t + 1], values[:, :, : t + 1]
        x = x + self.dropout(self.self_attn.attend(h, k, v, is_causal=cache is None)[0])
        h = self.cross_ln(x)
        if isinstance(self.cross_attn, LocationAwareAttention):
            out, weights, content = self.cross_attn.attend_located(h, *cross_kv, cross_mask, previous)
        else:
            (out, weights), content = self.cross_attn.attend(h, *cross_kv, cross_mask, need_weights=need_weights), None
        x = x + self.dropout(out)
        return x + self.dropout(self.ff(self.ff_ln(x))), weights, content


@dataclass
class DecoderCache:
    """Per-layer keys/values: self-attention grows one position a step; cross-attention is fixed."""
    self_k: List[Tensor]
    self_v: List[Tensor]
    cross_k: List[Tensor]
    cross_v: List[Tensor]
    memory_mask: Tensor  # [N, 1, 1, T] True = valid frame
    length: int = 0
    # location-aware cross-attention: per layer, the last step's content-only attention [N, H, T]
    previous: Optional[List[Tensor]] = None

    def reorder(self, index: Tensor, same_memory: bool = False) -> "DecoderCache":
        """Keeps rows `index` (beam search: each survivor continues from its parent's state).
        same_memory: each row is replaced by a row with the same encoder output (the beams of one
        utterance), so the cross-attention keys/values are kept rather than copied every step."""
        pick = lambda ts: [t.index_select(0, index) for t in ts]  # noqa: E731
        previous = None if self.previous is None else pick(self.previous)
        if same_memory:
            return DecoderCache(pick(self.self_k), pick(self.self_v), self.cross_k, self.cross_v, self.memory_mask,
                                self.length, previous)
        return DecoderCache(pick(self.self_k), pick(self.self_v), pick(self.cross_k), pick(self.cross_v),
                            self.memory_mask.index_select(0, index), self.length, previous)


class Decoder(BlockStack):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.add_stack(cfg, DecoderBlock, cfg.decoder_layers, location_kernel=cfg.location_kernel)
        self.out = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.attention_heads = (cfg.decoder_layers, cfg.n_heads)  # of cross-attention: ASRModel.alignment_heads' shape

    def embed_tokens(self, tokens: Tensor, offset: int) -> Tensor:
        return self.with_positions(self.embed(tokens), offset)

    def forward(self, tokens: Tensor, memory: Tensor, memory_lengths: Tensor,
                need_weights: bool = False) -> Tuple[Tensor, List[Tensor]]:
        """Teacher-forced pass over whole prefixes: logits [B, L, V] and per-layer cross-attention
        weights [B, H, L, T] (when asked)."""
        x = self.embed_tokens(tokens, 0)
        cross_mask = ~lengths_to_padding_mask(memory_lengths, memory.shape[1])[:, None, None, :]
        weights = []
        for block in self.blocks:
            x, w, _ = block(x, block.cross_attn.project_key_value(memory), cross_mask, need_weights=need_weights)
            weights.append(w)
        return self.out(self.ln(x)), weights

    def init_cache(self, memory: Tensor, memory_lengths: Tensor, max_len: int) -> DecoderCache:
        n, h = memory.shape[0], self.blocks[0].self_attn.n_heads
        dk = memory.shape[-1] // h
        empty = lambda: memory.new_zeros(n, h, max_len, dk)  # noqa: E731
        # contiguous: as views of one projection, each step's attention matmuls would copy them again
        cross = [[t.contiguous() for t in block.cross_attn.project_key_value(memory)] for block in self.blocks]
        mask = ~lengths_to_padding_mask(memory_lengths, memory.shape[1])[:, None, None, :]
        located = isinstance(self.blocks[0].cross_attn, LocationAwareAttention)
        previous = [memory.new_zeros(n, h, memory.shape[1]) for _ in self.blocks] if located else None
        return DecoderCache([empty() for _ in self.blocks], [empty() for _ in self.blocks],
                            [k for k, _ in cross], [v for _, v in cross], mask, previous=previous)

    def step(self, tokens: Tensor, cache: DecoderCache, cross_mask: Optional[Tensor] = None,
             need_weights: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """One incremental step for N hypotheses: tokens [N] -> logits [N, V] and the cross-attention
        weights [N, layers, H, T]. `cross_mask` ([N, T], True = allowed) narrows cross-attention
        (the monotonic window) on top of the padding mask. Writes this position into `cache`."""
        t = cache.length
        x = self.embed_tokens(tokens[:, None], t)
        mask = cache.memory_mask if cross_mask is None else cache.memory_mask & cross_mask[:, None, None, :]
        weights = []
        for i, block in enumerate(self.blocks):
            x, w, content = block(x, (cache.cross_k[i], cache.cross_v[i]), mask, (cache.self_k[i], cache.self_v[i], t),
                                  need_weights, None if cache.previous is None else cache.previous[i])
            if cache.previous is not None:
                cache.previous[i] = content[:, :, 0]
            weights.append(w)
        cache.length = t + 1
        stacked = torch.stack(weights, dim=1)[:, :, :, 0] if need_weights else None
        return self.out(self.ln(x[:, 0])), stacked


class ASRModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size < 4:
            raise ValueError("vocab_size must include the special tokens and at least one character")
        self.cfg = cfg
        self.frontend = LogMel(cfg.features)
        self.normalize = GlobalCMVN(cfg.features.n_mels)
        self.specaugment = SpecAugment(cfg.specaugment)
        self.encoder = LSTMEncoder(cfg) if cfg.arch == "lstm" else Encoder(cfg)
        self.decoder = LSTMDecoder(cfg) if cfg.arch == "lstm" else Decoder(cfg)
        self.ctc = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.blank, self.sos_eos = SPECIAL_TOKENS.index(BLANK), SPECIAL_TOKENS.index(SOS_EOS)
        # the decoder cross-attention heads whose mean gives the attended frame when decoding (the
        # attention window, the EOS rule, token times); chosen after training (asr/heads.py), all until then
        self.register_buffer("alignment_heads", torch.ones(self.decoder.attention_heads, dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Model files from before alignment heads were chosen hold none: every head, as they decoded."""
        state_dict.setdefault(prefix + "alignment_heads", torch.ones_like(self.alignment_heads))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def seconds_per_frame(self) -> float:
        """Duration of one encoder frame, to turn attention peaks into times."""
        f = self.cfg.features
        return self.cfg.subsampling * f.hop_length / f.sample_rate

    def encoder_frames(self, seconds: Optional[float]) -> Optional[int]:
        """How many encoder frames `seconds` of audio make (None for none or 0)."""
        return round(seconds / self.seconds_per_frame) if seconds else None

    def features(self, waveforms: Tensor, lengths: Tensor,
                 generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        feats, frames = self.frontend(waveforms, lengths)
        feats = self.normalize(feats)
        if self.cfg.utterance_cmn:
            feats = utterance_mean_normalize(feats, frames)
        if self.training:
            feats = self.specaugment(feats, frames, generator=generator)
        return feats, frames

    def encode(self, waveforms: Tensor, lengths: Tensor, generator: Optional[torch.Generator] = None,
               window: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Waveforms [B, S] at the feature sample rate -> encoder output [B, T, D] and its lengths.
        `window`: encoder frames beyond which inputs are encoded in overlapping windows (Encoder.windowed)."""
        memory, memory_lengths, _ = self.encode_with_intermediate(waveforms, lengths, generator, window)
        return memory, memory_lengths

    def encode_with_intermediate(self, waveforms: Tensor, lengths: Tensor, generator: Optional[torch.Generator] = None,
                                 window: Optional[int] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """encode, plus the intermediate CTC log-probabilities when the model has them (else None).
        Self-conditioning needs them to encode at all; otherwise only training computes them."""
        feats, frames = self.features(waveforms, lengths, generator)
        wanted = self.cfg.self_conditioning or (self.training and self.cfg.intermediate_ctc_weight > 0)
        return self.encoder(feats, frames, self.ctc if wanted else None, window)

    def ctc_log_probs(self, memory: Tensor) -> Tensor:
        return self.ctc(memory).log_softmax(dim=-1)

    def ctc_loss(self, log_probs: Tensor, memory_lengths: Tensor, tokens: Tensor, token_lengths: Tensor) -> Tensor:
        """Summed per utterance, averaged over the batch."""
        return F.ctc_loss(log_probs.transpose(0, 1), tokens.clamp(min=0), memory_lengths, token_lengths,
                          blank=self.blank, reduction="sum", zero_infinity=True) / tokens.shape[0]

    def decoder_io(self, tokens: Tensor) -> Tuple[Tensor, Tensor]:
        """Teacher forcing: input = BOS + tokens, target = tokens + EOS (padding = IGNORE_ID)."""
        b = tokens.shape[0]
        lengths = (tokens != IGNORE_ID).sum(dim=1)
        bos = tokens.new_full((b, 1), self.sos_eos)
        inputs = torch.cat([bos, tokens.masked_fill(tokens == IGNORE_ID, self.sos_eos)], dim=1)
        targets = torch.cat([tokens, tokens.new_full((b, 1), IGNORE_ID)], dim=1)
        targets[torch.arange(b), lengths] = self.sos_eos
        return inputs, targets

    def expected_frames(self, log_probs: Tensor, memory_lengths: Tensor, tokens: Tensor,
                        token_lengths: Tensor) -> Tensor:
        """The encoder frame each decoder query should attend to [B, L + 1]. Query i predicts token i,
        so it expects that token's frame: on the CTC head's best path for the reference (speaking rate
        varies within an utterance), or on the diagonal where asked or where no CTC path fits. The query
        predicting EOS expects the last frame."""
        frames = diagonal_frames(token_lengths, memory_lengths, tokens.shape[1])
        if self.cfg.guided_attention_path == "ctc":
            aligned, feasible = ctc_forced_align(log_probs, memory_lengths, tokens, token_lengths, self.blank)
            frames = torch.where(feasible[:, None], aligned.to(frames.dtype), frames)
        return query_frames(frames, token_lengths, memory_lengths)

    def guided_attention_loss(self, cross_weights: List[Tensor], log_probs: Tensor, memory_lengths: Tensor,
                              tokens: Tensor, token_lengths: Tensor) -> Tensor:
        """The penalty on every decoder layer's head-averaged cross-attention, averaged over layers; the
        penalty is linear in the weights, so that is the penalty of their mean over layers and heads."""
        weights = torch.stack(cross_weights).mean(dim=(0, 2))  # [layers, B, H, Q, T] -> [B, Q, T]
        expected = self.expected_frames(log_probs, memory_lengths, tokens, token_lengths)
        return guided_attention_penalty(weights, expected, token_lengths + 1, memory_lengths,
                                        self.cfg.guided_attention_sigma)

    def guided_attention_scale(self, step: int) -> float:
        """The penalty's weight after `step` optimiser steps: constant, or halving every decay_steps."""
        decay = self.cfg.guided_attention_decay_steps
        return self.cfg.guided_attention_weight * (0.5 ** (step / decay) if decay else 1.0)

    def forward(self, waveforms: Tensor, lengths: Tensor, tokens: Tensor,
                generator: Optional[torch.Generator] = None, step: int = 0) -> Dict[str, Tensor]:
        """Joint loss (1 - λ)·attention CE + λ·CTC, both summed per utterance and averaged over the
        batch as in ESPnet, with token-accuracy counts for logging. In training with a guided attention
        weight, plus that weight (decayed to optimiser step `step`) × the guided attention penalty,
        reported as guided_loss; evaluation losses leave it out, so they compare across runs. With
        scheduled sampling at that step, the decoder trains on inputs mixed with its own predictions."""
        memory, memory_lengths, intermediate = self.encode_with_intermediate(waveforms, lengths, generator)
        inputs, targets = self.decoder_io(tokens)
        sampling = self.cfg.scheduled_sampling.probability(step) if self.training else 0.0
        if sampling > 0:
            with torch.no_grad():
                first_pass, _ = self.decoder(inputs, memory, memory_lengths)
            inputs = mix_predictions(inputs, first_pass.argmax(dim=-1), sampling, generator)
        guided = self.training and self.cfg.guided_attention_weight > 0
        logits, cross_weights = self.decoder(inputs, memory, memory_lengths, need_weights=guided)
        b = tokens.shape[0]
        att_loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_ID, reduction="sum",
                                   label_smoothing=self.cfg.label_smoothing) / b
        token_lengths = (tokens != IGNORE_ID).sum(dim=1)
        log_probs = self.ctc_log_probs(memory)
        ctc_loss = self.ctc_loss(log_probs, memory_lengths, tokens, token_lengths)
        if intermediate is not None and self.training:
            w = self.cfg.intermediate_ctc_weight
            ctc_loss = (1 - w) * ctc_loss + w * self.ctc_loss(intermediate, memory_lengths, tokens, token_lengths)
        valid = targets != IGNORE_ID
        correct = ((logits.argmax(-1) == targets) & valid).sum()
        lam = self.cfg.ctc_loss_weight
        out = dict(loss=(1 - lam) * att_loss + lam * ctc_loss, att_loss=att_loss.detach(),
                   ctc_loss=ctc_loss.detach(), correct=correct.detach(), tokens=valid.sum(),
                   memory=memory, memory_lengths=memory_lengths)  # for losses computed outside (asr/mwer.py)
        if guided:
            guided_loss = self.guided_attention_loss(cross_weights, log_probs, memory_lengths, tokens, token_lengths)
            out["loss"] = out["loss"] + self.guided_attention_scale(step) * guided_loss
            out["guided_loss"] = guided_loss.detach()
        return out
