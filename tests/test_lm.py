"""The character language model (asr/lm.py), its training (asr/train_lm.py) and its fusion into the
beam search: trained on text it learns that text's spelling; steps with a state equal one pass;
weight 0 leaves the search exactly as without it; a heavy weight makes the search say what the LM
says; files with another vocabulary or of another kind are refused with one line."""
import math
import subprocess
import sys

import pytest
import torch

from asr.decode import DecodingOptions, beam_search
from asr.errors import ASRError
from asr.lm import CharLM, LMConfig, check_vocabulary, lm_from_file, lm_file
from asr.model import PRESETS, ASRModel, ModelConfig
from asr.text import IGNORE_ID, CharTokenizer
from asr.train_lm import lm_train_config, perplexity, batches, train_lm

SENTENCES = ["the cat sat on the mat", "a dog ate the bone", "the sun is hot today", "we like the red car",
             "my cat likes the sun", "the dog sat on a red mat"]
TOKENIZER = CharTokenizer.build(SENTENCES)


def log_prob(lm: CharLM, text: str) -> float:
    tokens = torch.tensor([TOKENIZER.encode(text)])
    with torch.no_grad():
        loss, _ = lm.loss(tokens)
    return -loss.item()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lm") / "lm.pt")
    cfg = lm_train_config(["epochs=60", "lm.hidden=64", "lm.embed_dim=16", "lm.layers=1", "lm.dropout=0.0",
                           "lr=0.01", "threads=1"])
    info = train_lm(cfg, SENTENCES * 4, SENTENCES, CharTokenizer(TOKENIZER.tokens), out)
    lm, tokens, _ = lm_from_file(torch.load(out, weights_only=True), out)
    return lm, tokens, info, out


def test_training_learns_the_spelling_of_its_text(trained):
    lm, tokens, info, _ = trained
    assert tokens == TOKENIZER.tokens
    untrained = CharLM(LMConfig(vocab_size=len(TOKENIZER), hidden=64, embed_dim=16, layers=1)).eval()
    data = batches([TOKENIZER.encode(t) for t in SENTENCES], 1000, None)
    assert perplexity(lm, data) < 2.0 < len(TOKENIZER) * 0.5 < perplexity(untrained, data)
    assert info["valid_perplexity"] == pytest.approx(perplexity(lm, data), rel=1e-3)
    assert info["history"][-1]["epoch"] == 60 and info["train_sentences"] == 24
    # a seen sentence is far likelier than the same letters scrambled
    assert log_prob(lm, "the cat sat on the mat") > log_prob(lm, "teh cta sta no hte amt") + 10


def test_steps_with_state_equal_one_pass(trained):
    lm = trained[0]
    tokens = torch.tensor([TOKENIZER.encode("the dog ate")])
    inputs = torch.cat([torch.tensor([[lm.sos_eos]]), tokens], dim=1)
    with torch.no_grad():
        whole = lm(inputs)[0].log_softmax(dim=-1)[0]
        logp, state = lm.start(1, torch.device("cpu"))
        steps = [logp[0]]
        for token in tokens[0]:
            logp, state = lm.step(token[None], state)
            steps.append(logp[0])
    torch.testing.assert_close(torch.stack(steps), whole, atol=1e-5, rtol=1e-5)


def test_loss_counts_every_character_and_eos():
    lm = CharLM(LMConfig(vocab_size=len(TOKENIZER), hidden=8, embed_dim=4, layers=1))
    tokens = torch.tensor([[3, 4, 5], [6, IGNORE_ID, IGNORE_ID]])
    total, count = lm.loss(tokens)
    assert count.item() == 4 + 2  # 3 + EOS, 1 + EOS
    assert math.isfinite(total.item())


def asr_model():
    torch.manual_seed(0)
    return ASRModel(ModelConfig(vocab_size=len(TOKENIZER), **PRESETS["tiny"])).eval()


def encoded(model, seconds=1.0):
    audio = torch.randn(2, int(seconds * 16000), generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.inference_mode():
        return model.encode(audio, torch.tensor([audio.shape[1], audio.shape[1] // 2]))


def test_fusion_with_weight_zero_is_the_search_without_lm(trained):
    model = asr_model()
    memory, lengths = encoded(model)
    options = DecodingOptions(beam_size=4, ctc_weight=0.3, lm_weight=0.0)
    with torch.inference_mode():
        plain = beam_search(model, memory, lengths, options)
        fused = beam_search(model, memory, lengths, options, trained[0])
    assert [r.tokens for r in plain] == [r.tokens for r in fused]
    assert [r.score for r in plain] == pytest.approx([r.score for r in fused], abs=1e-6)


def test_a_heavy_weight_makes_the_search_say_what_the_lm_says(tmp_path):
    """An LM that only ever saw "yes" outweighs a random recogniser: every utterance comes out "yes"."""
    lm_path = str(tmp_path / "yes.pt")
    cfg = lm_train_config(["epochs=40", "lm.hidden=32", "lm.embed_dim=8", "lm.layers=1", "lm.dropout=0.0",
                           "lr=0.02", "threads=1"])
    vocab = CharTokenizer(TOKENIZER.tokens)
    train_lm(cfg, ["yes"] * 20, ["yes"], vocab, lm_path)
    lm, _, _ = lm_from_file(torch.load(lm_path, weights_only=True), lm_path)
    torch.manual_seed(0)
    model = ASRModel(ModelConfig(vocab_size=len(vocab), **PRESETS["tiny"])).eval()
    memory, lengths = encoded(model)
    with torch.inference_mode():
        results = beam_search(model, memory, lengths, DecodingOptions(beam_size=3, ctc_weight=0.0, lm_weight=20.0), lm)
        plain = beam_search(model, memory, lengths, DecodingOptions(beam_size=3, ctc_weight=0.0), None)
    assert [vocab.decode(r.tokens) for r in results] == ["yes", "yes"]
    assert [vocab.decode(r.tokens) for r in plain] != ["yes", "yes"]


def test_another_vocabulary_or_kind_of_file_is_refused(trained, tmp_path):
    lm, tokens, _, path = trained
    with pytest.raises(ASRError, match="vocabulary .* is not the model's"):
        check_vocabulary(tokens, tokens[:-1], path)
    with pytest.raises(ASRError, match="not a language model file"):
        lm_from_file({"format": "asr-model-1"}, "model.pt")
    broken = lm_file(lm, tokens, {})
    broken["state_dict"] = {}
    with pytest.raises(ASRError, match="damaged"):
        lm_from_file(broken, "lm.pt")
    with pytest.raises(ASRError, match="lm.hidden|hidden"):
        lm_train_config(["lm.hidden=0"])
    with pytest.raises(ASRError, match="unknown option 'lm.hiden'; did you mean 'lm.hidden'"):
        lm_train_config(["lm.hiden=8"])


def test_command_line_trains_and_decodes_with_the_lm(overfit_model, tmp_path):
    model, manifest = overfit_model
    lm_path = tmp_path / "lm.pt"
    asr = [sys.executable, "-m", "asr_cli"]
    run = subprocess.run(asr + ["train-lm", "--model", model, "--text", manifest, "--valid-text", manifest,
                                "--out", str(lm_path), "--set", "epochs=3", "lm.hidden=32", "threads=1"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "held-out perplexity" in run.stderr and lm_path.exists()
    again = subprocess.run(asr + ["train-lm", "--model", model, "--text", manifest, "--valid-text", manifest,
                                  "--out", str(lm_path)], capture_output=True, text=True)
    assert again.returncode == 1 and "exists: pass --overwrite" in again.stderr
    out = tmp_path / "eval"
    run = subprocess.run(asr + ["evaluate", "--model", model, "--manifest", manifest, "--out", str(out),
                                "--lm", str(lm_path), "--lm-weight", "0.2", "--plots", "0"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "CER" in run.stdout
    wrong = subprocess.run(asr + ["evaluate", "--model", model, "--manifest", manifest, "--out", str(out),
                                  "--lm", model, "--overwrite"], capture_output=True, text=True)
    assert wrong.returncode == 1 and "not a language model file" in wrong.stderr
    assert "Traceback" not in wrong.stderr
