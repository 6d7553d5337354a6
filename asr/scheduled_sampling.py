"""Scheduled sampling in two passes, the form a Transformer decoder allows (Mihaylova & Martins 2019;
Duckworth et al. 2019): teacher forcing trains the decoder on perfect prefixes, decoding feeds it its
own. Pass one predicts every position under teacher forcing, without gradients; pass two trains on
inputs where each reference token is, with probability p, replaced by pass one's prediction of it.
p ramps up over training (Bengio et al. 2015)."""
import math
from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

import torch
from torch import Tensor

from .features import uniform_draws


@dataclass
class ScheduledSamplingConfig:
    prob: float = 0.0  # p once ramped up; 0 = off: teacher forcing exactly
    schedule: str = "linear"  # constant (p from start_step on), linear or sigmoid ramp over ramp_steps
    start_step: int = 0  # optimiser steps of teacher forcing alone before p rises from 0
    ramp_steps: int = 2000

    SCHEDULES: ClassVar[Tuple[str, ...]] = ("constant", "linear", "sigmoid")

    def __post_init__(self):
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"scheduled_sampling.prob must be in [0, 1], got {self.prob}")
        if self.schedule not in self.SCHEDULES:
            raise ValueError(f"scheduled_sampling.schedule must be one of {', '.join(self.SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if self.start_step < 0 or self.ramp_steps < 1:
            raise ValueError(f"scheduled_sampling.start_step must be >= 0 and ramp_steps >= 1, "
                             f"got {self.start_step} and {self.ramp_steps}")

    def probability(self, step: int) -> float:
        """p after `step` optimiser steps."""
        if self.prob == 0 or step < self.start_step:
            return 0.0
        progress = min((step - self.start_step) / self.ramp_steps, 1.0)
        if self.schedule == "constant":
            return self.prob
        if self.schedule == "linear":
            return self.prob * progress
        # inverse-sigmoid decay of teacher forcing, centred on the ramp's middle: 0.7 % → 99.3 % of p
        return self.prob / (1.0 + math.exp(-10.0 * (progress - 0.5)))


def mix_predictions(inputs: Tensor, predictions: Tensor, prob: float,
                    generator: Optional[torch.Generator] = None) -> Tensor:
    """Decoder inputs [B, L + 1] (BOS, then the reference) with each reference token replaced, with
    probability `prob`, by the prediction made for its position: predictions[:, i] is pass one's guess
    of the token that input i + 1 holds. BOS is never replaced."""
    replace = uniform_draws(generator, inputs.device, inputs.shape[0], inputs.shape[1] - 1) < prob
    mixed = inputs.clone()
    mixed[:, 1:] = torch.where(replace, predictions[:, :-1], inputs[:, 1:])
    return mixed
