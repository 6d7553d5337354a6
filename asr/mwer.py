"""Minimum expected character errors (MWER, Prabhavalkar et al. 2018), for fine-tuning: per-token
cross-entropy is not the error rate people score. For each utterance the batched beam search gives
an N-best list; the loss is the number of character errors expected under the model's probabilities
of those hypotheses, renormalised over the list, with the list's mean errors subtracted (a baseline
that leaves the gradient's expectation unchanged and lowers its variance)."""
from dataclasses import replace
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from rapidfuzz.distance import Levenshtein
from torch import Tensor

from .decode import DecodingOptions, decode_memory
from .model import ASRModel
from .text import IGNORE_ID


def nbest_hypotheses(model: ASRModel, memory: Tensor, memory_lengths: Tensor,
                     options: DecodingOptions) -> List[List[List[int]]]:
    """Each utterance's N-best token lists (N = options.nbest), searched without dropout or gradients."""
    was_training = model.training
    model.eval()
    try:
        results = decode_memory(model, memory.detach(), memory_lengths, options)
    finally:
        model.train(was_training)
    return [[list(tokens) for tokens, _ in r.nbest] for r in results]


def character_errors(hypotheses: Sequence[Sequence[List[int]]], references: Sequence[List[int]]) -> Tensor:
    """[B, N] edit distances between each hypothesis and its reference (tokens are characters), with
    lists shorter than N padded by -1."""
    n = max(len(h) for h in hypotheses)
    errors = torch.full((len(hypotheses), n), -1.0)
    for i, (hyps, ref) in enumerate(zip(hypotheses, references)):
        errors[i, :len(hyps)] = torch.tensor([float(Levenshtein.distance(h, ref)) for h in hyps])
    return errors


def hypothesis_log_probs(model: ASRModel, memory: Tensor, memory_lengths: Tensor,
                         hypotheses: Sequence[Sequence[List[int]]]) -> Tensor:
    """[B, N] log P(hypothesis + EOS | audio) under the decoder, with gradients; -inf where an
    utterance has fewer than N hypotheses."""
    b, n = len(hypotheses), max(len(h) for h in hypotheses)
    rows = [(i, h) for i, hyps in enumerate(hypotheses) for h in hyps]
    longest = max(1, max(len(h) for _, h in rows))
    tokens = torch.full((len(rows), longest), IGNORE_ID, dtype=torch.long)
    for r, (_, h) in enumerate(rows):
        tokens[r, :len(h)] = torch.tensor(h, dtype=torch.long)
    tokens = tokens.to(memory.device)
    which = torch.tensor([i for i, _ in rows], device=memory.device)
    inputs, targets = model.decoder_io(tokens)
    logits, _ = model.decoder(inputs, memory[which], memory_lengths[which])
    per_token = -F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_ID, reduction="none")
    scores = torch.full((b, n), float("-inf"), device=memory.device, dtype=per_token.dtype)
    slot = torch.tensor([k for hyps in hypotheses for k in range(len(hyps))], device=memory.device)
    return scores.index_put((which, slot), per_token.sum(dim=1))


def expected_errors_loss(log_probs: Tensor, errors: Tensor) -> Tensor:
    """Mean over utterances of Σ_i P̂(y_i) · (errors_i − mean errors), P̂ the probabilities renormalised
    over the N-best; padded entries (errors −1, log-probability −inf) take no part."""
    valid = errors >= 0
    probs = log_probs.masked_fill(~valid, float("-inf")).softmax(dim=-1)
    baseline = (errors * valid).sum(dim=-1, keepdim=True) / valid.sum(dim=-1, keepdim=True)
    relative = (errors - baseline).to(probs.device).masked_fill(~valid.to(probs.device), 0.0)
    return (probs.nan_to_num(0.0) * relative).sum(dim=-1).mean()


def mwer_loss(model: ASRModel, memory: Tensor, memory_lengths: Tensor, tokens: Tensor,
              options: DecodingOptions) -> Tensor:
    """The expected-errors loss of a batch, reference `tokens` [B, L] padded with IGNORE_ID."""
    references = [[t for t in row if t != IGNORE_ID] for row in tokens.tolist()]
    hypotheses = nbest_hypotheses(model, memory, memory_lengths, options)
    errors = character_errors(hypotheses, references)
    return expected_errors_loss(hypothesis_log_probs(model, memory, memory_lengths, hypotheses), errors)


class MWERObjective:
    """The term that minimum expected error training adds to a batch's loss: weight × the expected
    errors of N-best lists from a beam search with `options` (its beam_size and nbest set to N)."""

    def __init__(self, weight: float, nbest: int, options: DecodingOptions):
        self.weight = weight
        self.options = replace(options, beam_size=nbest, nbest=nbest)

    def __call__(self, model: ASRModel, out: Dict[str, Tensor], tokens: Tensor) -> Tensor:
        return self.weight * mwer_loss(model, out["memory"], out["memory_lengths"], tokens, self.options)
