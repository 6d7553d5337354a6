import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from asr.audio import audio_duration
from asr.checkpoint import load_model_file
from asr_cli import main as cli_main
from asr.config import TrainConfig
from asr.data import Batch
from asr.segments import Segment, write_manifest
from asr.train import backward, load_data, train
from data_prep.fsdd import DIGITS



@pytest.fixture(scope="module")
def fsdd_manifests(shared_data, tmp_path_factory):
    """24 real FSDD recordings (train) and 6 (valid) from two speakers."""
    folder = tmp_path_factory.mktemp("manifests")
    rec = shared_data / "fsdd" / "recordings"

    def utts(takes):
        return [Segment(id=f"{d}_{s}_{t}", path=str(rec / f"{d}_{s}_{t}.wav"),
                        duration=audio_duration(str(rec / f"{d}_{s}_{t}.wav")), text=DIGITS[d], speaker=s)
                for d in range(0, 10, 3) for s in ("george", "lucas") for t in takes]

    write_manifest(str(folder / "train.jsonl"), utts([10, 11, 12]))
    write_manifest(str(folder / "valid.jsonl"), utts([5]))
    return str(folder / "train.jsonl"), str(folder / "valid.jsonl")


def tiny_config(**overrides) -> TrainConfig:
    base = dict(preset="tiny", epochs=2, max_batch_seconds=4.0, num_workers=0, warmup_steps=5,
                keep_best=2, average_best=2, threads=1,
                model=dict(dropout=0.0, specaugment=dict(freq_masks=1, time_masks=1)))
    return TrainConfig(**{**base, **overrides})


def weights(path):
    return load_model_file(path).model.state_dict()


def test_training_writes_a_self_contained_model(fsdd_manifests, tmp_path):
    path = train(tiny_config(), *fsdd_manifests, str(tmp_path))
    assert path == str(tmp_path / "model.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"config", "tokens", "lang", "state_dict"} and "training" not in raw
    assert raw["tokens"][:3] == ["<blank>", "<unk>", "<sos/eos>"]
    loaded = load_model_file(path)
    assert loaded.model.normalize.std.min() > 0  # CMVN statistics travel with the weights
    metrics = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(0.0 <= m["valid_cer"] and 0.0 <= m["valid_acc"] <= 1.0 for m in metrics)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch1.pt", "epoch2.pt", "last.pt"]


def test_resume_after_interruption_ends_where_an_uninterrupted_run_does(fsdd_manifests, tmp_path):
    straight = train(tiny_config(), *fsdd_manifests, str(tmp_path / "a"))
    stopped = train(tiny_config(), *fsdd_manifests, str(tmp_path / "b"), should_stop=lambda step: step == 4)
    assert stopped is None and os.path.exists(tmp_path / "b" / "checkpoints" / "last.pt")
    resumed = train(tiny_config(), *fsdd_manifests, str(tmp_path / "b"), resume=True)
    a, b = weights(straight), weights(resumed)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    history = lambda d: [{k: v for k, v in json.loads(line).items() if "per_second" not in k and k != "minutes"}  # noqa: E731
                         for line in open(tmp_path / d / "metrics.jsonl")]
    assert history("a") == history("b")


def test_cli_refuses_to_overwrite_a_run_and_reports_bad_config(fsdd_manifests, tmp_path, capsys):
    (tmp_path / "exp" / "checkpoints").mkdir(parents=True)
    (tmp_path / "exp" / "checkpoints" / "last.pt").write_bytes(b"precious")
    config = tmp_path / "c.yaml"
    config.write_text("preset: tiny\nepochs: 1\n")
    code = cli_main(["train", "--config", str(config), "--train", fsdd_manifests[0], "--valid", fsdd_manifests[1],
                     "--exp-dir", str(tmp_path / "exp")])
    assert code == 1 and "--resume" in capsys.readouterr().err
    assert (tmp_path / "exp" / "checkpoints" / "last.pt").read_bytes() == b"precious"
    config.write_text("preset: huge\n")
    code = cli_main(["train", "--config", str(config), "--train", fsdd_manifests[0], "--valid", fsdd_manifests[1],
                     "--exp-dir", str(tmp_path / "exp2")])
    assert code == 1 and "unknown preset 'huge'" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_like_one_process_at_the_same_global_batch(fsdd_manifests, tmp_path):
    cfg = dict(preset="tiny", epochs=1, max_batch_seconds=100.0, max_batch_size=8, num_workers=0, warmup_steps=5, threads=1,
               keep_best=1, average_best=1, model=dict(dropout=0.0, specaugment=dict(freq_masks=0, time_masks=0)))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    args = ["--config", str(config), "--train", fsdd_manifests[0], "--valid", fsdd_manifests[1], "--device", "cpu"]
    single = train(TrainConfig(**cfg), *fsdd_manifests, str(tmp_path / "one"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    f"--master_port={free_port()}", "-m", "asr_cli", "train", *args,
                    "--exp-dir", str(tmp_path / "two")], check=True, env=env, capture_output=True, timeout=300)
    a, b = weights(single), weights(str(tmp_path / "two" / "model.pt"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=2e-4, msg=name)
    one_metrics = json.loads(open(tmp_path / "one" / "metrics.jsonl").readline())
    two_metrics = json.loads(open(tmp_path / "two" / "metrics.jsonl").readline())
    assert two_metrics["train_loss"] == pytest.approx(one_metrics["train_loss"], rel=1e-3)


def test_resume_after_checkpoints_were_pruned_finishes_like_a_straight_run(fsdd_manifests, tmp_path):
    cfg = tiny_config(epochs=3, keep_best=1, average_best=1)
    straight = train(cfg, *fsdd_manifests, str(tmp_path / "a"))
    assert train(cfg, *fsdd_manifests, str(tmp_path / "b"), should_stop=lambda step: step == 10) is None
    kept = sorted(os.listdir(tmp_path / "b" / "checkpoints"))
    assert len(kept) == 2 and "last.pt" in kept  # one of epochs 1 and 2 was pruned before the stop
    resumed = train(cfg, *fsdd_manifests, str(tmp_path / "b"), resume=True)
    assert resumed == str(tmp_path / "b" / "model.pt")
    assert len([f for f in os.listdir(tmp_path / "b" / "checkpoints") if f.startswith("epoch")]) == 1
    a, b = weights(straight), weights(resumed)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_recommended_decoding_options_are_stored_in_the_model_file(fsdd_manifests, tmp_path):
    path = train(tiny_config(epochs=1, decoding=dict(ctc_weight=0.5, beam_size=4)), *fsdd_manifests, str(tmp_path))
    info = load_model_file(path).info
    assert info["decoding"] == {"ctc_weight": 0.5, "beam_size": 4}
    assert info["averaged"] == ["epoch1.pt"] and info["train_config"]["decoding"] == info["decoding"]
    # the alignment heads, chosen on the dev set after averaging, are in the file with their scores
    heads, found = torch.load(path, weights_only=True)["state_dict"]["alignment_heads"], info["alignment_heads"]
    assert found["heads"] == heads.nonzero().tolist() != [] and len(found["scores"]) == 1
    assert found["utterances"] == 8


def test_several_corpora_share_one_vocabulary_and_each_dev_set_is_reported(shared_data, fsdd_manifests, tmp_path):
    from asr.segments import load_manifest

    yesno = shared_data / "yesno" / "waves_yesno"
    names = sorted(p.name for p in yesno.glob("*.wav"))[:4]
    segments = [Segment(p[:-4], str(yesno / p), audio_duration(str(yesno / p)),
                        " ".join("yes" if w == "1" else "no" for w in p[:-4].split("_"))) for p in names]
    write_manifest(str(tmp_path / "yesno_train.jsonl"), segments[:3])
    write_manifest(str(tmp_path / "yesno_dev.jsonl"), segments[3:])
    train_fsdd, valid_fsdd = fsdd_manifests
    cfg = tiny_config(epochs=1, train_weights=[1.0, 2.0], max_batch_seconds=20.0)
    train(cfg, [train_fsdd, str(tmp_path / "yesno_train.jsonl")], [valid_fsdd, str(tmp_path / "yesno_dev.jsonl")],
          str(tmp_path / "exp"))
    tokens = set(load_model_file(str(tmp_path / "exp" / "model.pt")).tokenizer.tokens)
    assert {"y", "s", "z"} <= tokens  # "yes" from one corpus, "zero" from the other
    [metrics] = [json.loads(line) for line in open(tmp_path / "exp" / "metrics.jsonl")]
    assert metrics["valid_cer"] == pytest.approx((metrics["valid_cer[valid]"] + metrics["valid_cer[yesno_dev]"]) / 2)
    assert len(load_manifest(train_fsdd)) == 24


def test_a_time_budget_stops_between_epochs_and_still_writes_the_model(fsdd_manifests, tmp_path):
    path = train(tiny_config(epochs=5, max_minutes=1e-4), *fsdd_manifests, str(tmp_path))
    assert os.path.exists(path)
    assert len(open(tmp_path / "metrics.jsonl").readlines()) == 1  # the first epoch always runs


def test_the_training_step_reaches_the_model_for_decaying_loss_terms():
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, waveforms, lengths, tokens, generator=None, step=0):
            self.step = step
            return dict(loss=2 * self.w)

    model = Recorder()
    batch = Batch(torch.zeros(1, 4), torch.tensor([4]), torch.tensor([[3]]), torch.tensor([1]), ["a"])
    loss = backward(model, batch, torch.device("cpu"), torch.Generator(), torch.amp.GradScaler("cuda", enabled=False),
                    "none", 1.0, sync=True, step=42)
    assert model.step == 42 and loss == 2.0 and model.w.grad.item() == 2.0


def test_weight_decay_can_spare_biases_norms_and_embeddings():
    from asr.model import PRESETS, ASRModel, ModelConfig
    from asr.train import parameter_groups

    model = ASRModel(ModelConfig(vocab_size=10, **PRESETS["tiny"]))
    decayed, kept = parameter_groups(model, 0.1, "matrices")
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.1, 0.0)
    assert len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))
    assert all(p.ndim >= 2 for p in decayed["params"])
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    assert {id(model.decoder.embed.weight), id(model.encoder.ln.weight), id(model.decoder.out.bias)} <= ids(kept)
    assert {id(model.decoder.out.weight), id(model.encoder.subsample.convs[0].weight)} <= ids(decayed)
    [everything] = parameter_groups(model, 0.1, "all")
    assert len(everything["params"]) == len(list(model.parameters()))


def test_cosine_schedule_warms_up_then_falls_to_zero():
    from asr.train import lr_schedule

    def rates(kind):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        schedule = lr_schedule(optimizer, warmup_steps=10, kind=kind, total_steps=100)
        out = []
        for _ in range(100):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return out

    cosine, inverse_sqrt = rates("cosine"), rates("inverse_sqrt")
    assert cosine[9] == pytest.approx(1.0) and cosine[:10] == inverse_sqrt[:10]
    assert cosine[54] == pytest.approx(0.5, abs=0.02) and cosine[99] < 0.001
    assert all(a >= b for a, b in zip(cosine[9:], cosine[10:]))
    assert inverse_sqrt[39] == pytest.approx(0.5)


def test_longest_training_utterance_counts_the_slowest_speed_perturbation(fsdd_manifests, tmp_path):
    """Slowed to 0.8, a 1 s recording trained as 1.25 s: recordings up to that long are decoded whole."""
    train_manifest, valid_manifest = fsdd_manifests
    longest = max(json.loads(line)["duration"] for line in open(train_manifest))
    plain = load_data(tiny_config(train=[train_manifest], valid=[valid_manifest]), str(tmp_path / "a.txt"))
    perturbed = load_data(tiny_config(train=[train_manifest], valid=[valid_manifest],
                                      augment=dict(speed_factors=[0.8, 1.0, 1.1])), str(tmp_path / "b.txt"))
    assert plain.longest == pytest.approx(longest)
    assert perturbed.longest == pytest.approx(longest / 0.8)


def test_longest_training_utterance_is_the_joined_length_when_utterances_are_joined(fsdd_manifests, tmp_path):
    """Trained on utterances joined up to 20 s, the model decodes recordings up to 20 s whole."""
    train_manifest, valid_manifest = fsdd_manifests
    joined = load_data(tiny_config(train=[train_manifest], valid=[valid_manifest],
                                   augment=dict(concat_prob=0.2, concat_seconds=20.0, speed_factors=[0.8, 1.0])),
                       str(tmp_path / "a.txt"))
    assert joined.longest == pytest.approx(20.0 / 0.8)


def test_fine_tuning_starts_from_the_model_file_and_keeps_its_vocabulary(fsdd_manifests, tmp_path):
    first = train(tiny_config(epochs=1), *fsdd_manifests, str(tmp_path / "first"))
    start = load_model_file(first)
    tuned_cfg = tiny_config(epochs=1, peak_lr=1e-9, warmup_steps=1, mwer_weight=1.0, mwer_nbest=2,
                            model=dict(dropout=0.0, specaugment=dict(freq_masks=0, time_masks=0)))
    tuned = load_model_file(train(tuned_cfg, *fsdd_manifests, str(tmp_path / "tuned"), init_from=first))
    assert tuned.tokenizer.tokens == start.tokenizer.tokens
    assert torch.equal(tuned.model.normalize.mean, start.model.normalize.mean)  # feature statistics kept
    for name, value in start.model.state_dict().items():  # a learning rate of 1e-9 barely moves them
        torch.testing.assert_close(tuned.model.state_dict()[name], value, atol=1e-5, rtol=0)
    assert tuned.info["init_from"] == os.path.abspath(first)
    assert tuned.model.cfg.specaugment.freq_masks == 0  # the config's model entries apply on top


def test_fine_tuning_refuses_model_options_that_change_its_shape(fsdd_manifests, tmp_path, capsys):
    first = train(tiny_config(epochs=1), *fsdd_manifests, str(tmp_path / "first"))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(dict(preset="tiny", epochs=1, num_workers=0, threads=1)))
    code = cli_main(["train", "--config", str(config), "--train", fsdd_manifests[0], "--valid", fsdd_manifests[1],
                     "--exp-dir", str(tmp_path / "tuned"), "--init-from", first, "--set", "model.d_model=32"])
    assert code != 0 and "cannot fine-tune" in capsys.readouterr().err
    code = cli_main(["train", "--config", str(config), "--train", fsdd_manifests[0], "--valid", fsdd_manifests[1],
                     "--exp-dir", str(tmp_path / "tuned2"), "--init-from", str(tmp_path / "missing.pt")])
    assert code != 0 and "no such model" in capsys.readouterr().err


def test_chinese_numerals_and_the_vocabulary_cut_off_are_applied_and_recorded(fsdd_manifests, tmp_path):
    """Arabic digits train as Chinese numerals; a character seen once falls under min_token_count=2 and is
    counted; the model file says both, and evaluation normalises references the same way."""
    from asr.evaluate import evaluate
    from asr.segments import load_manifest
    from asr.transcribe import Recognizer

    def as_arabic(manifest, name):
        segments = load_manifest(manifest)
        for s in segments:
            s.text = str(DIGITS.index(s.text))
        segments[0].text += "号"
        write_manifest(str(tmp_path / name), segments)
        return str(tmp_path / name)

    train_manifest, valid_manifest = as_arabic(fsdd_manifests[0], "train.jsonl"), as_arabic(fsdd_manifests[1], "dev.jsonl")
    cfg = tiny_config(epochs=1, lang="zh", numerals="chinese", min_token_count=2)
    data = load_data(TrainConfig(**{**cfg.__dict__, "train": [train_manifest]}), str(tmp_path / "tokens.txt"))
    assert sorted(data.train.tokenizer.tokens[3:]) == sorted("零三六九")
    assert (data.unknown, data.num_characters) == ({"号": 1}, 25)
    info = load_model_file(train(cfg, train_manifest, valid_manifest, str(tmp_path / "exp"))).info
    assert info["train_config"]["numerals"] == "chinese"
    assert (info["unknown_train_characters"], info["unknown_train_character_count"]) == ({"号": 1}, 1)
    summary = evaluate(Recognizer.load(str(tmp_path / "exp" / "model.pt")), valid_manifest, str(tmp_path / "eval"),
                       plots=0)
    refs = [json.loads(line)["ref"] for line in open(tmp_path / "eval" / "results.jsonl")]
    assert refs[0] == "零号" and set("".join(refs[1:])) <= set("零三六九")
    assert summary["mer"] == pytest.approx(summary["cer"])  # no English words: MER is CER


KILL_RUN = dict(preset="tiny", epochs=3, max_batch_seconds=4.0, num_workers=0, warmup_steps=5, keep_best=2,
                average_best=2, threads=1, model=dict(dropout=0.0, specaugment=dict(freq_masks=1, time_masks=1)))


def start_cli_training(tmp_path, manifests, exp_dir):
    """`asr train` of KILL_RUN in a child process (to be killed or interrupted)."""
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(KILL_RUN))
    return subprocess.Popen([sys.executable, "-m", "asr_cli", "train", "--config", str(config), "--train", manifests[0],
                             "--valid", manifests[1], "--exp-dir", str(exp_dir), "--device", "cpu"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path, proc, timeout=120.0):
    import time
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            pytest.fail(f"training ended (rc {proc.returncode}) before {path} appeared: "
                        f"{proc.communicate()[1].decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {path} after {timeout} s")
        time.sleep(0.01)


def test_sigkill_after_the_first_checkpoint_resumes_to_the_straight_runs_weights(fsdd_manifests, tmp_path):
    """kill -9 just as epoch1.pt appears (possibly while last.pt is being written): every checkpoint left
    reads back, and --resume ends bit for bit where an uninterrupted run does."""
    import signal
    straight = train(TrainConfig(**KILL_RUN), *fsdd_manifests, str(tmp_path / "a"))
    proc = start_cli_training(tmp_path, fsdd_manifests, tmp_path / "b")
    wait_for(tmp_path / "b" / "checkpoints" / "epoch1.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    for name in os.listdir(tmp_path / "b" / "checkpoints"):
        if not name.startswith(".tmp-"):  # unfinished writes are never renamed into place
            torch.load(tmp_path / "b" / "checkpoints" / name, weights_only=True)
    assert (tmp_path / "b" / "train.lock").exists()  # left by the killed run: it must not block the resume
    resumed = train(TrainConfig(**KILL_RUN), *fsdd_manifests, str(tmp_path / "b"), resume=True)
    assert not [n for n in os.listdir(tmp_path / "b" / "checkpoints") if n.startswith(".tmp-")]
    assert not (tmp_path / "b" / "train.lock").exists()
    a, b = weights(straight), weights(resumed)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_ctrl_c_saves_exits_with_130_and_resumes_to_the_straight_runs_weights(fsdd_manifests, tmp_path):
    import signal
    straight = train(TrainConfig(**KILL_RUN), *fsdd_manifests, str(tmp_path / "a"))
    proc = start_cli_training(tmp_path, fsdd_manifests, tmp_path / "b")
    wait_for(tmp_path / "b" / "checkpoints" / "epoch1.pt", proc)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 130, stderr[-2000:]
    assert "continue with --resume" in stderr and not (tmp_path / "b" / "model.pt").exists()
    stopped = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["training"]
    assert (stopped["epoch"], stopped["step"]) > (0, 0)
    resumed = train(TrainConfig(**KILL_RUN), *fsdd_manifests, str(tmp_path / "b"), resume=True)
    a, b = weights(straight), weights(resumed)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_a_second_run_on_a_folder_in_use_is_refused_even_with_resume(fsdd_manifests, tmp_path, capsys):
    import signal
    proc = start_cli_training(tmp_path, fsdd_manifests, tmp_path / "exp")
    try:
        wait_for(tmp_path / "exp" / "tokens.txt", proc)  # written under the lock
        for resume in ([], ["--resume"]):
            code = cli_main(["train", "--config", str(tmp_path / "kill.yaml"), "--train", fsdd_manifests[0], "--valid",
                             fsdd_manifests[1], "--exp-dir", str(tmp_path / "exp"), "--device", "cpu", *resume])
            err = capsys.readouterr().err
            assert code == 1 and (f"process {proc.pid}" in err or "--resume" in err and not resume), err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
