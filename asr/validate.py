"""How well a model in training does on held-out data: teacher-forced loss and token accuracy, and the
character error rate of greedy decoding (attention decoder alone, as fast as decoding gets)."""
from typing import Dict

import torch
from torch.utils.data import DataLoader

from .config import MAX_BATCH_SIZE
from .data import SpeechDataset, collate
from .decode import DecodingOptions, decode
from .metrics import character_error_rate
from .model import ASRModel

GREEDY = DecodingOptions(beam_size=1, ctc_weight=0.0)


@torch.no_grad()
def validate(model: ASRModel, dataset: SpeechDataset, device: torch.device, num_workers: int = 0,
             batch_size: int = MAX_BATCH_SIZE) -> Dict[str, float]:
    """valid_loss (per utterance), valid_acc (of next-token predictions), valid_cer (greedy)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate, num_workers=num_workers)
    loss = correct = tokens = 0.0
    refs, hyps = [], []
    for batch in loader:
        waves, lengths = batch.waveforms.to(device), batch.waveform_lengths.to(device)
        out = model(waves, lengths, batch.tokens.to(device))
        loss += out["loss"].item() * len(batch.ids)
        correct += out["correct"].item()
        tokens += out["tokens"].item()
        for result, ref_tokens, n in zip(decode(model, waves, lengths, GREEDY), batch.tokens, batch.token_lengths):
            refs.append(dataset.tokenizer.decode(ref_tokens[:n].tolist()))
            hyps.append(dataset.tokenizer.decode(result.tokens))
    return dict(valid_loss=loss / max(1, len(refs)), valid_acc=correct / max(1, tokens),
                valid_cer=character_error_rate(refs, hyps))
