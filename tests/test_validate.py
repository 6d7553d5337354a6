import pytest
import torch

from asr.checkpoint import load_model_file
from asr.data import SpeechDataset
from asr.model import PRESETS, ASRModel, ModelConfig
from asr.segments import Segment
from asr.text import CharTokenizer
from asr.validate import length_cap, validate


def test_an_overfit_model_validates_with_no_errors(overfit_model):
    path, manifest = overfit_model
    loaded = load_model_file(path)
    metrics = validate(loaded.model, SpeechDataset(manifest, loaded.tokenizer), torch.device("cpu"))
    assert set(metrics) == {"valid_loss", "valid_acc", "valid_cer"}
    assert metrics["valid_cer"] == 0.0 and metrics["valid_acc"] > 0.9 and metrics["valid_loss"] > 0


@pytest.fixture
def untrained(overfit_model):
    """An untrained tiny model (it never says EOS) and the overfit fixture's six utterances."""
    _, manifest = overfit_model
    tokenizer = CharTokenizer.build(["one two three"])
    torch.manual_seed(0)
    return ASRModel(ModelConfig(vocab_size=len(tokenizer), **PRESETS["tiny"])), SpeechDataset(manifest, tokenizer)


def test_results_do_not_depend_on_the_batch_size(untrained):
    model, dataset = untrained
    whole, one_by_one = (validate(model, dataset, torch.device("cpu"), batch_size=n) for n in (32, 1))
    assert not model.training
    assert one_by_one["valid_cer"] == whole["valid_cer"] > 0  # an untrained model gets them wrong
    assert one_by_one["valid_acc"] == whole["valid_acc"]
    assert one_by_one["valid_loss"] == pytest.approx(whole["valid_loss"], rel=1e-4)


def test_greedy_validation_is_capped_by_the_reference_length(untrained, shared_data):
    model, dataset = untrained
    # 11 s of speech (275 encoder frames) with a 7-character reference: uncapped, the untrained
    # decoder would run to one token per frame; capped, it stops at 2 x 7 + 10
    long = Segment("jfk", str(shared_data / "clips/en/whisper_jfk.flac"), 11.0, "one two")
    metrics = validate(model, SpeechDataset([long], dataset.tokenizer), torch.device("cpu"))
    assert 1 < metrics["valid_cer"] <= length_cap(7) / 7
    assert set(validate(model, dataset, torch.device("cpu"), decode_cer=False)) == {"valid_loss", "valid_acc"}
