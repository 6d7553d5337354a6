import pytest
import torch

from asr.audio import load_audio
from asr.decode import DecodingOptions
from asr.model import IGNORE_ID, PRESETS, ASRModel, ModelConfig
from asr.mwer import MWERObjective, character_errors, expected_errors_loss, hypothesis_log_probs

NAMES = ["1_george_5.wav", "2_jackson_6.wav", "8_nicolas_7.wav"]
TOKENS = torch.tensor([[5, 6, 7, 5], [8, 9, IGNORE_ID, IGNORE_ID], [10, 11, 4, 9]])


def test_gradient_moves_probability_to_the_hypothesis_with_fewer_errors():
    log_probs = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).requires_grad_()
    errors = torch.tensor([[3.0, 0.0, 5.0]])
    optimizer = torch.optim.SGD([log_probs], lr=0.5)
    before = log_probs.softmax(-1).detach()
    for _ in range(20):
        optimizer.zero_grad()
        expected_errors_loss(log_probs, errors).backward()
        optimizer.step()
    after = log_probs.softmax(-1).detach()
    assert after[0, 1] > 0.9 > before[0, 1] and after[0, 2] < before[0, 2]


def test_loss_is_expected_errors_minus_the_list_mean_and_ignores_padding():
    log_probs = torch.log(torch.tensor([[0.25, 0.75, 1.0], [0.5, 0.5, 1.0]]))
    log_probs[:, 2] = float("-inf")  # lists of two, padded to three
    errors = torch.tensor([[4.0, 0.0, -1.0], [2.0, 6.0, -1.0]])
    loss = expected_errors_loss(log_probs.requires_grad_(), errors)
    # first: 0.25·4 + 0.75·0 − 2 = −1; second: 4 − 4 = 0 (uniform probabilities gain nothing)
    assert loss.item() == pytest.approx(-0.5)
    loss.backward()
    assert torch.isfinite(log_probs.grad).all()


def test_character_errors_are_edit_distances_over_tokens():
    errors = character_errors([[[5, 6, 7], [5, 7], [9, 9, 9, 9]], [[]]], [[5, 6, 7], [8, 9]])
    assert errors.tolist() == [[0.0, 1.0, 4.0], [2.0, -1.0, -1.0]]


@pytest.fixture(scope="module")
def encoded(shared_data):
    torch.manual_seed(0)
    model = ASRModel(ModelConfig(vocab_size=12, **PRESETS["tiny"])).train()
    waves = [torch.from_numpy(load_audio(str(shared_data / "fsdd" / "recordings" / n))) for n in NAMES]
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), torch.tensor([len(w) for w in waves])
    return model, batch


def test_hypothesis_scores_are_the_decoders_sequence_log_probabilities(encoded):
    model, (waves, lengths) = encoded
    model.eval()
    with torch.no_grad():
        memory, memory_lengths = model.encode(waves, lengths)
        hypotheses = [[[5, 6], [7]], [[8, 9, 10]], [[4], [5, 5], [6]]]
        scores = hypothesis_log_probs(model, memory, memory_lengths, hypotheses)
        assert scores.shape == (3, 3) and scores[1, 1:].isinf().all()
        for i, hyps in enumerate(hypotheses):
            for k, h in enumerate(hyps):
                inputs, targets = model.decoder_io(torch.tensor([h]))
                logits, _ = model.decoder(inputs, memory[i:i + 1, :memory_lengths[i]], memory_lengths[i:i + 1])
                expected = logits.log_softmax(-1)[0].gather(1, targets[0, :, None]).sum()
                assert scores[i, k].item() == pytest.approx(expected.item(), abs=1e-4)
    model.train()


def test_objective_searches_nbest_lists_and_gives_the_decoder_a_gradient(encoded):
    model, (waves, lengths) = encoded
    out = model(waves, lengths, TOKENS)
    term = MWERObjective(0.5, 3, DecodingOptions(ctc_weight=0.3))(model, out, TOKENS)
    assert model.training  # the search ran in eval mode and handed the model back in training mode
    assert torch.isfinite(term) and term.requires_grad
    term.backward()
    assert model.decoder.embed.weight.grad.abs().sum() > 0
