import json
import os

import pytest
import torch

import asr.checkpoint as checkpoint
from asr.checkpoint import (CheckpointManager, average_checkpoints, load_model_file, model_file,
                            ranked_checkpoints)
from asr.errors import ASRError
from asr.fileio import atomic_save
from asr.model import PRESETS, ASRModel, ModelConfig

TOKENS = ["<blank>", "<unk>", "<sos/eos>", "a", "b"]


def tiny_model() -> ASRModel:
    torch.manual_seed(0)
    return ASRModel(ModelConfig(vocab_size=len(TOKENS), **PRESETS["tiny"]))


def checkpoint_state(model: ASRModel, value: float, count: int, epoch: int) -> dict:
    """Every floating-point weight = value; the CMVN frame count (an integer buffer) = count."""
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.fill_(value)
        model.normalize.count.fill_(count)
    state = model_file(model, TOKENS, "en", dict(epoch=epoch))
    state["training"] = dict(epoch=epoch)
    return state


def write_checkpoint(path, model: ASRModel, value: float, count: int, epoch: int) -> None:
    atomic_save(checkpoint_state(model, value, count, epoch), str(path))


def test_average_is_the_mean_of_the_weights_with_integer_buffers_from_the_last(tmp_path):
    model = tiny_model()
    assert not model.normalize.count.is_floating_point()
    paths = [str(tmp_path / f"epoch{i}.pt") for i in (1, 2, 3)]
    for epoch, (path, value, count) in enumerate(zip(paths, [1.0, 2.0, 4.5], [10, 20, 30]), 1):
        write_checkpoint(path, model, value, count, epoch)
    out = str(tmp_path / "model.pt")
    average_checkpoints(paths, out)
    raw = torch.load(out, weights_only=True)
    assert "training" not in raw and raw["info"] == dict(epoch=1, averaged=["epoch1.pt", "epoch2.pt", "epoch3.pt"])
    loaded = load_model_file(out)
    assert loaded.tokenizer.tokens == TOKENS
    for name, v in loaded.model.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32 and torch.all(v == 2.5), name
    assert loaded.model.normalize.count.item() == 30


def test_average_reads_each_checkpoint_once(tmp_path, monkeypatch):
    model = tiny_model()
    paths = [str(tmp_path / f"epoch{i}.pt") for i in (1, 2)]
    for i, path in enumerate(paths):
        write_checkpoint(path, model, float(i), i, i)
    reads = []
    real = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path: reads.append(path) or real(path))
    average_checkpoints(paths, str(tmp_path / "model.pt"))
    assert reads == paths
    with pytest.raises(ASRError, match="no checkpoints"):
        average_checkpoints([], str(tmp_path / "none.pt"))


def write_metrics(exp_dir, rows):
    (exp_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    with open(exp_dir / "metrics.jsonl", "a") as f:
        for epoch, cer, loss in rows:
            f.write(json.dumps(dict(epoch=epoch, valid_cer=cer, valid_loss=loss)) + "\n")


def test_ranking_is_by_cer_then_loss_then_the_later_epoch(tmp_path):
    with pytest.raises(ASRError, match="no metrics.jsonl"):
        ranked_checkpoints(str(tmp_path))
    write_metrics(tmp_path, [(1, 0.5, 1.0), (2, 0.2, 3.0), (3, 0.2, 2.0), (4, 0.1, 9.0), (5, 0.2, 2.0), (6, 0.0, 0.1)])
    for epoch in (1, 2, 3, 4, 5):  # epoch 6 was pruned
        (tmp_path / "checkpoints" / f"epoch{epoch}.pt").write_bytes(b"")
    ranked = [os.path.basename(p) for p in ranked_checkpoints(str(tmp_path))]
    assert ranked == ["epoch4.pt", "epoch5.pt", "epoch3.pt", "epoch2.pt", "epoch1.pt"]


def test_manager_keeps_the_best_and_averages_the_best_into_model_pt(tmp_path):
    model, manager = tiny_model(), CheckpointManager(str(tmp_path), keep_best=2, average_best=2)
    assert manager.load_last() is None
    for epoch, (cer, value) in enumerate([(0.5, 1.0), (0.1, 2.0), (0.3, 3.0), (0.4, 4.0)], 1):
        manager.add_epoch(epoch, dict(epoch=epoch, valid_cer=cer, valid_loss=1.0),
                          checkpoint_state(model, value, epoch, epoch))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch2.pt", "epoch3.pt", "last.pt"]
    assert manager.load_last()["info"]["epoch"] == 4
    assert manager.write_model() == str(tmp_path / "model.pt") == manager.model_path
    loaded = load_model_file(manager.model_path)
    assert loaded.info["averaged"] == ["epoch2.pt", "epoch3.pt"]
    assert torch.all(loaded.model.ctc.weight == 2.5) and loaded.model.normalize.count.item() == 3


def test_model_files_with_the_old_ctc_weight_name_still_load(tmp_path):
    state = model_file(tiny_model(), TOKENS, "en", {})
    del state["config"]["ctc_loss_weight"]
    state["config"]["ctc_weight"] = 0.7
    atomic_save(state, str(tmp_path / "old.pt"))
    assert load_model_file(str(tmp_path / "old.pt")).model.cfg.ctc_loss_weight == 0.7


def test_ranking_by_accuracy_ignores_a_meaningless_early_cer(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    # early in a long training greedy CER is over 100 % and noisy; token accuracy still climbs
    rows = [(1, 1.80, 0.30, 80.0), (2, 1.90, 0.35, 75.0), (3, 1.60, 0.33, 76.0), (4, 1.85, 0.40, 70.0)]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for epoch, cer, acc, loss in rows:
            f.write(json.dumps(dict(epoch=epoch, valid_cer=cer, valid_acc=acc, valid_loss=loss)) + "\n")
            (tmp_path / "checkpoints" / f"epoch{epoch}.pt").write_bytes(b"")
    by = lambda rank_by: [os.path.basename(p) for p in ranked_checkpoints(str(tmp_path), rank_by)]  # noqa: E731
    assert by("cer") == ["epoch3.pt", "epoch1.pt", "epoch4.pt", "epoch2.pt"]
    assert by("acc") == ["epoch4.pt", "epoch2.pt", "epoch3.pt", "epoch1.pt"]


def test_model_files_from_before_alignment_heads_load_with_every_head_and_decode_as_before(tmp_path):
    from asr.decode import DecodingOptions, decode

    model = tiny_model().eval()
    old = model_file(model, TOKENS, "en", {})
    del old["state_dict"]["alignment_heads"]
    atomic_save(old, str(tmp_path / "old.pt"))
    loaded = load_model_file(str(tmp_path / "old.pt")).model
    assert loaded.alignment_heads.dtype == torch.bool and loaded.alignment_heads.all()
    torch.manual_seed(1)
    waves, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 11000])
    options = DecodingOptions(beam_size=3, window_back=2, window_forward=6, eos_near_end=4)
    assert [(r.tokens, r.score, r.frames) for r in decode(loaded, waves, lengths, options)] == \
        [(r.tokens, r.score, r.frames) for r in decode(model, waves, lengths, options)]
    model.alignment_heads[0, 0] = False  # a choice travels in the file
    atomic_save(model_file(model, TOKENS, "en", {}), str(tmp_path / "new.pt"))
    assert load_model_file(str(tmp_path / "new.pt")).model.alignment_heads.tolist() == [[False, True]]
