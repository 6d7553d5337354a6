import pytest
import torch

from asr.checkpoint import load_model_file
from asr.data import SpeechDataset
from asr.model import PRESETS, ASRModel, ModelConfig
from asr.text import CharTokenizer
from asr.validate import length_cap, validate


def test_an_overfit_model_validates_with_no_errors(overfit_model):
    path, manifest = overfit_model
    loaded = load_model_file(path)
    metrics = validate(loaded.model, SpeechDataset(manifest, loaded.tokenizer), torch.device("cpu"))
    assert set(metrics) == {"valid_loss", "valid_acc", "valid_cer"}
    assert metrics["valid_cer"] == 0.0 and metrics["valid_acc"] > 0.9 and metrics["valid_loss"] > 0


def test_results_do_not_depend_on_the_batch_size(overfit_model):
    _, manifest = overfit_model
    tokenizer = CharTokenizer.build(["one two three"])
    torch.manual_seed(0)
    model = ASRModel(ModelConfig(vocab_size=len(tokenizer), **PRESETS["tiny"]))
    dataset = SpeechDataset(manifest, tokenizer)
    whole, one_by_one = (validate(model, dataset, torch.device("cpu"), batch_size=n) for n in (32, 1))
    assert not model.training
    assert one_by_one["valid_cer"] == whole["valid_cer"] > 0  # an untrained model gets them wrong
    assert one_by_one["valid_acc"] == whole["valid_acc"]
    assert one_by_one["valid_loss"] == pytest.approx(whole["valid_loss"], rel=1e-4)


def test_greedy_validation_is_capped_by_the_reference_length(overfit_model):
    _, manifest = overfit_model
    tokenizer = CharTokenizer.build(["one two three"])
    torch.manual_seed(0)
    model = ASRModel(ModelConfig(vocab_size=len(tokenizer), **PRESETS["tiny"]))
    dataset = SpeechDataset(manifest, tokenizer)
    metrics = validate(model, dataset, torch.device("cpu"))
    refs = [len(s.text) for s in dataset.segments]  # "one", "two", "three": 3 to 5 characters
    # an untrained decoder never says EOS: each hypothesis stops at 2 x its reference + 10 characters
    assert metrics["valid_cer"] <= sum(length_cap(n) + n for n in refs) / sum(refs)
    assert length_cap(5) == 20
    assert set(validate(model, dataset, torch.device("cpu"), decode_cer=False)) == {"valid_loss", "valid_acc"}
