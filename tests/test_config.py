from dataclasses import replace
from pathlib import Path

import pytest

from asr.config import TrainConfig, apply_overrides, load_train_config
from asr.decode import DecodingOptions
from asr.errors import ASRError
from asr.model import ModelConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture
def config_file(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "train.yaml"
        path.write_text(text)
        return str(path)
    return write


def test_dotted_overrides_reach_into_sections_with_the_fields_types(config_file):
    path = config_file("preset: tiny\nmodel:\n  dropout: 0.0\n")
    cfg = load_train_config(path, ["epochs=3", "peak_lr=1", "model.d_model=128", "model.specaugment.time_masks=0",
                                   "model.features.fmax=none", "decoding.ctc_weight=0.5", "decoding.window_back=null",
                                   "decoding.eos_near_end=4"])
    assert cfg.epochs == 3 and cfg.peak_lr == 1.0 and isinstance(cfg.peak_lr, float)
    assert cfg.model == dict(dropout=0.0, d_model=128, specaugment=dict(time_masks=0), features=dict(fmax=None))
    assert cfg.decoding == dict(ctc_weight=0.5, window_back=None, eos_near_end=4)
    model = cfg.model_config(vocab_size=8)
    assert model.d_model == 128 and model.specaugment.time_masks == 0 and model.specaugment.freq_masks == 2
    assert cfg.decoding_options() == DecodingOptions(ctc_weight=0.5, eos_near_end=4)


@pytest.mark.parametrize("override, message", [
    ("model.dropout=abc", "'model.dropout' must be a number, got 'abc'"),
    ("epochs=2.5", "'epochs' must be an integer"),
    ("decoding.beam_size=none", "'decoding.beam_size' must be an integer"),
    ("lang=3", "'lang' must be a string"),
    ("model=3", "'model' must be a mapping"),
    ("epochs.x=1", "override 'epochs.x=1': 'epochs' is a value, not a section"),
    ("epochs", "not KEY=VALUE"),
])
def test_values_of_the_wrong_type_are_refused_naming_the_key(config_file, override, message):
    with pytest.raises(ASRError, match=message.replace(".", r"\.")):
        load_train_config(config_file("preset: tiny\n"), [override])


@pytest.mark.parametrize("override, unknown, suggestion", [
    ("epoch=3", "epoch", "epochs"),
    ("modle.d_model=3", "modle", "model"),
    ("model.specaugment.time_mask=0", "model.specaugment.time_mask", "model.specaugment.time_masks"),
    ("decoding.ctc_wieght=0.5", "decoding.ctc_wieght", "decoding.ctc_weight"),
])
def test_unknown_override_keys_are_refused_with_the_closest_known_one(config_file, override, unknown, suggestion):
    with pytest.raises(ASRError) as error:
        load_train_config(config_file("preset: tiny\n"), [override])
    assert str(error.value) == f"override {override!r}: unknown option {unknown!r}; did you mean {suggestion!r}?"


def test_unknown_keys_in_the_file_are_refused_at_any_depth(config_file):
    with pytest.raises(ASRError, match=r"train\.yaml: unknown option 'epoch'; did you mean 'epochs'"):
        load_train_config(config_file("epoch: 3\n"))
    with pytest.raises(ASRError, match=r"option 'model\.features\.n_mel'; did you mean 'model\.features\.n_mels'"):
        load_train_config(config_file("model:\n  features:\n    n_mel: 40\n"))
    with pytest.raises(ASRError, match="'model.dropout' must be a number"):
        load_train_config(config_file("model:\n  dropout: high\n"))


def test_decoding_options_are_checked_when_the_config_is_loaded(config_file):
    with pytest.raises(ASRError, match="bad decoding options: ctc_weight must be in"):
        load_train_config(config_file("decoding:\n  ctc_weight: 2\n"))
    with pytest.raises(ASRError, match="nbest"):
        load_train_config(config_file("preset: tiny\n"), ["decoding.nbest=3", "decoding.beam_size=2"])
    with pytest.raises(ASRError, match="unknown preset 'huge'"):
        load_train_config(config_file("preset: huge\n"))
    with pytest.raises(ASRError, match="amp must be one of"):
        load_train_config(config_file("amp: fp8\n"))
    with pytest.raises(ASRError, match="bad model options: guided_attention_weight must be >= 0"):
        load_train_config(config_file("preset: tiny\n"), ["model.guided_attention_weight=-1"])


def test_the_old_name_of_the_ctc_loss_weight_still_reads(config_file):
    cfg = load_train_config(config_file("preset: tiny\nmodel:\n  ctc_weight: 0.5\n"))
    assert cfg.model == dict(ctc_loss_weight=0.5) and cfg.model_config(8).ctc_loss_weight == 0.5
    assert load_train_config(config_file("preset: tiny\n"), ["model.ctc_weight=0.4"]).model == dict(ctc_loss_weight=0.4)
    assert ModelConfig.from_dict(dict(vocab_size=8, ctc_weight=0.2)).ctc_loss_weight == 0.2
    with pytest.raises(ASRError, match="given twice"):
        load_train_config(config_file("model:\n  ctc_weight: 0.5\n  ctc_loss_weight: 0.5\n"))


def test_overrides_against_other_schemas_leave_their_input_alone():
    data = {"window_back": 4}
    changes = apply_overrides(data, ["length_bonus=0.5", "window_forward=32", "window_back=none"], DecodingOptions)
    assert data == {"window_back": 4} and changes == dict(window_back=None, length_bonus=0.5, window_forward=32)
    assert replace(DecodingOptions(), **changes).length_bonus == 0.5
    assert apply_overrides({}, ["dropout=0", "specaugment.time_masks=0"], ModelConfig) == \
        dict(dropout=0.0, specaugment=dict(time_masks=0))


@pytest.mark.parametrize("recipe", sorted(p.parent.parent.name for p in RECIPES.glob("*/conf/train.yaml")))
def test_every_recipe_config_loads(recipe):
    cfg = load_train_config(str(RECIPES / recipe / "conf" / "train.yaml"))
    assert isinstance(cfg, TrainConfig) and cfg.model_config(vocab_size=30).vocab_size == 30
    if recipe == "yesno":
        assert cfg.decoding == dict(ctc_weight=0.5, window_from="ctc", window_back=4, window_forward=12)
        assert cfg.model["ctc_loss_weight"] == 0.5
