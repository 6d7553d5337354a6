"""How well a model in training does on held-out data: teacher-forced loss and token accuracy, and the
character error rate of greedy decoding (attention decoder alone, as fast as decoding gets)."""
from dataclasses import replace
from typing import Dict

import torch
from torch.utils.data import DataLoader

from .config import BATCH_SECONDS, MAX_BATCH_SIZE
from .data import SpeechDataset, collate
from .decode import DecodingOptions, decode
from .metrics import character_error_rate
from .model import ASRModel
from .segments import length_buckets

GREEDY = DecodingOptions(beam_size=1, ctc_weight=0.0)


def length_cap(longest_reference: int) -> int:
    """Tokens greedy validation may emit: far more than a fair hypothesis needs, far fewer than an
    untrained decoder that never says EOS would otherwise run to (one token per encoder frame)."""
    return 2 * longest_reference + 10


@torch.no_grad()
def validate(model: ASRModel, dataset: SpeechDataset, device: torch.device, num_workers: int = 0,
             batch_size: int = MAX_BATCH_SIZE, decode_cer: bool = True) -> Dict[str, float]:
    """valid_loss (per utterance), valid_acc (of next-token predictions) and, with decode_cer,
    valid_cer (greedy, each batch capped at length_cap of its longest reference)."""
    model.eval()
    batches = length_buckets([s.duration for s in dataset.segments], BATCH_SECONDS, batch_size)
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)
    loss = correct = tokens = utterances = 0.0
    refs, hyps = [], []
    for batch in loader:
        waves, lengths = batch.waveforms.to(device), batch.waveform_lengths.to(device)
        out = model(waves, lengths, batch.tokens.to(device))
        loss += out["loss"].item() * len(batch.ids)
        correct += out["correct"].item()
        tokens += out["tokens"].item()
        utterances += len(batch.ids)
        if decode_cer:
            # the batch's cap, then each utterance's own: the same as decoding each alone with its cap
            options = replace(GREEDY, max_tokens=length_cap(int(batch.token_lengths.max())))
            for result, ref_tokens, n in zip(decode(model, waves, lengths, options), batch.tokens,
                                             batch.token_lengths.tolist()):
                refs.append(dataset.tokenizer.decode(ref_tokens[:n].tolist()))
                hyps.append(dataset.tokenizer.decode(result.tokens[:length_cap(n)]))
    metrics = dict(valid_loss=loss / max(1, utterances), valid_acc=correct / max(1, tokens))
    if decode_cer:
        metrics["valid_cer"] = character_error_rate(refs, hyps)
    return metrics
