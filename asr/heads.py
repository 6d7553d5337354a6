"""Alignment heads: the decoder cross-attention heads that follow the audio (Whisper ships such a list
per model). Found after training on dev data, teacher-forced, by how closely each head's attention
follows the CTC head's forced alignment of the reference; stored in the model, whose decoding then takes
the attended frame (attention window, EOS rule, token times) from them alone, not from every head."""
from typing import Dict, Tuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .alignment import choose_alignment_heads, ctc_forced_align, head_alignment_scores, query_frames
from .config import BATCH_SECONDS, MAX_BATCH_SIZE
from .data import SpeechDataset, collate
from .model import ASRModel
from .segments import length_buckets


@torch.no_grad()
def alignment_head_scores(model: ASRModel, dataset: SpeechDataset, tolerance: float,
                          num_workers: int = 0) -> Tuple[Tensor, int]:
    """Each decoder head's score [layers, heads] (see head_alignment_scores) over every query of the
    utterances whose non-empty reference the model's CTC head can align, and how many those were."""
    model.eval()
    device = model.alignment_heads.device
    batches = length_buckets([s.duration for s in dataset.segments], BATCH_SECONDS, MAX_BATCH_SIZE)
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)
    matched = torch.zeros(model.alignment_heads.shape, dtype=torch.float64, device=device)
    queries = utterances = 0
    for batch in loader:
        tokens, token_lengths = batch.tokens.to(device), batch.token_lengths.to(device)
        memory, memory_lengths = model.encode(batch.waveforms.to(device), batch.waveform_lengths.to(device))
        _, weights = model.decoder(model.decoder_io(tokens)[0], memory, memory_lengths, need_weights=True)
        frames, feasible = ctc_forced_align(model.ctc_log_probs(memory), memory_lengths, tokens, token_lengths,
                                            model.blank)
        query_lengths = (token_lengths + 1) * (feasible & (token_lengths > 0))  # 0: left out
        per_head = torch.stack(weights).transpose(1, 2)  # [layers, B, heads, Q, T] -> [layers, heads, B, Q, T]
        scores = head_alignment_scores(per_head, query_frames(frames, token_lengths, memory_lengths), query_lengths,
                                       memory_lengths, tolerance)
        matched += scores * query_lengths.sum()  # shares of this batch's queries -> counts
        queries += int(query_lengths.sum())
        utterances += int((query_lengths > 0).sum())
    return (matched / max(1, queries)).cpu(), utterances


def find_alignment_heads(model: ASRModel, dataset: SpeechDataset, num_workers: int = 0, tolerance: float = 2.0,
                         share_of_best: float = 0.9) -> Dict:
    """Scores every head on `dataset`, stores the chosen ones in `model.alignment_heads` (see
    choose_alignment_heads: nothing to score leaves every head) and returns what a model file's info
    records of the choice. `tolerance` is in encoder frames (model.seconds_per_frame each, 40 ms by default)."""
    scores, utterances = alignment_head_scores(model, dataset, tolerance, num_workers)
    model.alignment_heads.copy_(choose_alignment_heads(scores, share_of_best))
    return dict(heads=model.alignment_heads.nonzero().tolist(), scores=scores.round(decimals=4).tolist(),
                utterances=utterances, tolerance=tolerance, share_of_best=share_of_best)


def describe_heads(found: Dict) -> str:
    """One line for logs: every head's score, layer by layer, the chosen ones starred."""
    chosen = {tuple(h) for h in found["heads"]}
    return f"alignment heads from {found['utterances']} utterances (scores by layer, * chosen): " + " | ".join(
        " ".join(f"{score:.3f}{'*' if (layer, head) in chosen else ''}" for head, score in enumerate(row))
        for layer, row in enumerate(found["scores"]))
