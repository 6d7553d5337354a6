"""What a user's bad input does at the command line: one line on stderr naming the file and the
problem, a non-zero exit code, no traceback (unless `asr --debug`), and the user's files untouched.
Manifests through evaluate, transcribe and train; model files through transcribe, evaluate, info and
average; outputs that cannot be written (a full disk, simulated with a file size limit)."""
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr_cli import main


def run_asr(*args, preexec_fn=None):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "asr_cli", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=preexec_fn, env=env, timeout=300)


def snapshot(folder):
    """Every file below `folder` with its bytes, to show nothing of the user's changed."""
    return {str(p): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def one_error_line(err: str, command: str) -> str:
    """The error line, checking it is the only line that is not a training log line."""
    lines = [line for line in err.splitlines() if line.strip() and " asr." not in line]  # train's INFO log lines
    assert len(lines) == 1 and lines[0].startswith(f"asr {command}: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


# ---- manifests ----------------------------------------------------------------------------------

def bad_manifest(kind: str, manifest: str, folder: Path) -> Path:
    """The overfit model's manifest (six utterances) with line 2 broken in one way."""
    lines = [json.loads(line) for line in open(manifest)]
    for i, entry in enumerate(lines):
        entry["id"] = f"u{i}"
    second = lines[1]
    if kind == "invalid_json":
        lines[1] = '{"id": "u1", "audio": '
    elif kind == "not_an_object":
        lines[1] = '["u1.wav"]'
    elif kind == "missing_audio_key":
        del second["audio"]
    elif kind == "missing_text_key":
        del second["text"]
    elif kind == "negative_duration":
        second["duration"] = -3
    elif kind == "non_numeric_duration":
        second["duration"] = "long"
    elif kind == "negative_offset":
        second["offset"] = -0.5
    elif kind == "duplicate_id":
        second["id"] = "u0"
    elif kind == "audio_does_not_exist":
        second["audio"] = str(folder / "nowhere" / "u1.wav")
    elif kind == "audio_is_empty":
        (folder / "empty.wav").write_bytes(b"")
        second["audio"] = str(folder / "empty.wav")
    elif kind == "empty_transcript":
        second["text"] = ""
    elif kind == "outside_the_vocabulary":
        second["text"] = "twö"  # the model spells with e, h, n, o, r, t, w and space only
    path = folder / f"{kind}.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n"
                            for line in lines), encoding="utf-8")
    return path


# kind -> the message at line 2 (or None: no error), for (evaluate, transcribe, train)
MANIFEST_CASES = {
    "invalid_json": ("not valid JSON (Expecting value)",) * 3,
    "not_an_object": ("expected a JSON object",) * 3,
    "missing_audio_key": ("missing 'audio' (or 'audio_filepath'/'wav')",) * 3,
    "missing_text_key": ("no 'text' (the reference transcript", None, "no 'text' (the reference transcript"),
    "negative_duration": ("'duration' must be a number of seconds >= 0, not -3",) * 3,
    "non_numeric_duration": ("'duration' must be a number of seconds >= 0, not \"long\"",) * 3,
    "negative_offset": ("'offset' must be a number of seconds >= 0, not -0.5",) * 3,
    "duplicate_id": ("id 'u0' is already used on line 1",) * 3,
    "audio_does_not_exist": ("{folder}/nowhere/u1.wav: no such file",) * 3,  # transcribe: skipped, others done
    "audio_is_empty": ("{folder}/empty.wav: file is empty (0 bytes)",) * 3,
    "empty_transcript": (None, None, None),  # evaluate: counted; train: left out with a warning
    "outside_the_vocabulary": (None, None, None),  # evaluate: counted and reported
}


def manifest_command(command: str, manifest: Path, model_path: str, folder: Path):
    if command == "evaluate":
        return ["evaluate", "--model", model_path, "--manifest", manifest, "--out", folder / "eval", "--plots", "0",
                "--beam-size", "1"]
    if command == "transcribe":
        return ["transcribe", "--model", model_path, "--beam-size", "1", manifest]
    config = folder / "c.yaml"
    config.write_text("preset: tiny\nepochs: 1\nnum_workers: 0\nthreads: 1\n")
    # a valid set that fails after the training manifest was read: a run that would train stops here
    broken_valid = folder / "broken_valid.jsonl"
    broken_valid.write_text('{"audio": \n')
    return ["train", "--config", config, "--train", manifest, "--valid", broken_valid, "--exp-dir", folder / "exp"]


@pytest.mark.parametrize("command", ["evaluate", "transcribe", "train"])
@pytest.mark.parametrize("kind", MANIFEST_CASES)
def test_bad_manifest_line_is_one_line_naming_the_file_and_line(kind, command, overfit_model, tmp_path, capsys):
    model_path, manifest = overfit_model
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = bad_manifest(kind, manifest, inputs)
    before = snapshot(inputs)
    message = MANIFEST_CASES[kind][("evaluate", "transcribe", "train").index(command)]
    code = main([str(a) for a in manifest_command(command, path, model_path, tmp_path)])
    out, err = capsys.readouterr()
    if message is not None:
        expected = f"{path}:2: {message.format(folder=inputs)}"
        if command == "transcribe" and kind.startswith("audio_"):  # skipped like an unreadable file, the rest done
            assert code == 1 and err.splitlines()[0] == f"asr transcribe: skipped {expected}", err
            assert len(out.splitlines()) == 5 and "Traceback" not in err
        else:
            assert code == 1 and expected in one_error_line(err, command), err
            assert out == ""
    elif command == "train":  # read past the training manifest: the valid set's line is what stops it
        assert code == 1 and f"{tmp_path / 'broken_valid.jsonl'}:1: not valid JSON" in one_error_line(err, command)
    else:
        assert code == 0, err
    assert snapshot(inputs) == before


def test_evaluate_counts_empty_references_and_characters_outside_the_vocabulary(overfit_model, tmp_path, capsys):
    model_path, manifest = overfit_model
    for kind, key, printed in (("empty_transcript", "empty_references", "1 of 6 references are empty"),
                               ("outside_the_vocabulary", "unknown_reference_characters",
                                "1 of 22 reference characters are outside the model's vocabulary "
                                "(it cannot write them), e.g. ö")):
        path = bad_manifest(kind, manifest, tmp_path)
        out = tmp_path / kind
        assert main(["evaluate", "--model", model_path, "--manifest", str(path), "--out", str(out), "--plots", "0"]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary[key] == 1 and printed in capsys.readouterr().out
        if kind == "empty_transcript":  # what the model says there is all insertions
            assert summary["char_errors"]["insertions"] == len("one") and summary["num_utterances"] == 6
    assert json.loads((tmp_path / "outside_the_vocabulary" / "summary.json").read_text())["empty_references"] == 0


def test_training_leaves_out_empty_transcripts_with_a_warning_that_counts_them(overfit_model, tmp_path, caplog):
    from asr.config import TrainConfig
    from asr.train import load_data

    _, manifest = overfit_model
    lines = [json.loads(line) for line in open(manifest)]
    lines[1]["text"], lines[4]["text"] = "", " !? "  # nothing left once normalised
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(entry) + "\n" for entry in lines))
    cfg = TrainConfig(preset="tiny", train=[str(path)], valid=[str(path)])
    with caplog.at_level("WARNING", logger="asr.train"):
        data = load_data(cfg, str(tmp_path / "tokens.txt"))
    assert len(data.train) == 4 and len(data.valid["train"]) == 4
    assert f"{path}: left out 2 utterances with an empty transcript, e.g. {lines[1]['id']}, {lines[4]['id']}" \
        in caplog.text


def test_ids_taken_from_file_names_may_repeat(overfit_model, tmp_path, capsys):
    """A manifest of stretches of one recording without ids (NeMo's offset lines) is no duplicate."""
    model_path, manifest = overfit_model
    audio = json.loads(open(manifest).readline())["audio"]
    path = tmp_path / "stretches.jsonl"
    path.write_text("".join(json.dumps({"audio": audio, "offset": 0.0, "duration": d}) + "\n" for d in (0.2, 0.3)))
    assert main(["transcribe", "--model", model_path, "--beam-size", "1", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


# ---- model files --------------------------------------------------------------------------------

class RunsCode:
    """Unpickled, it calls open(marker, "w"): the file appearing would mean loading ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def bad_model(kind: str, model_path: str, folder: Path) -> Path:
    path = folder / f"{kind}.pt"
    if kind == "truncated":
        data = Path(model_path).read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "text":
        path.write_text("a text file, not a model\n")
    elif kind == "json":
        path.write_text(json.dumps({"format": "asr-model-1", "tokens": ["a"]}) + "\n")
    elif kind == "pickle_in_torch_file":  # torch.save's zip archive around a malicious pickle
        torch.save({"format": "asr-model-1", "payload": RunsCode(str(folder / "MARKER"))}, path)
    elif kind.startswith("plain_pickle"):  # the legacy (non-zip) format torch.load also reads
        with open(path, "wb") as f:
            pickle.dump({"format": "asr-model-1", "payload": RunsCode(str(folder / "MARKER"))}, f,
                        protocol=2 if kind.endswith("2") else pickle.DEFAULT_PROTOCOL)
    elif kind == "damaged_model":  # torch reads it, but weights are missing
        raw = torch.load(model_path, weights_only=True)
        raw["state_dict"].pop("ctc.weight")
        torch.save(raw, path)
    return path


MODEL_CASES = {
    "truncated": "not a readable checkpoint: a damaged or truncated PyTorch archive",
    "text": "not a readable checkpoint: not a PyTorch file (neither a zip archive nor a pickle)",
    "json": "not a readable checkpoint: not a PyTorch file (neither a zip archive nor a pickle)",
    "pickle_in_torch_file": "not a readable checkpoint: it holds Python objects besides tensors and plain data "
                            "(io.open), which are not loaded because unpickling them could run code",
    "plain_pickle": "not a readable checkpoint: a pickle not written by torch.save, which is not loaded because "
                    "unpickling it could run code",
    "plain_pickle_protocol_2": "not a readable checkpoint: it holds Python objects besides tensors and plain data "
                               "(io.open), which are not loaded because unpickling them could run code",
    "damaged_model": "a damaged asr model file (RuntimeError: Error(s) in loading state_dict for ASRModel: "
                     "Missing key(s) in state_dict: \"ctc.weight\"",
}


def test_the_crafted_pickle_does_run_code_when_unpickled(tmp_path):
    """The payload the model cases use is live: plain pickle.load runs it."""
    pickle.loads(pickle.dumps(RunsCode(str(tmp_path / "probe"))))
    assert (tmp_path / "probe").exists()


@pytest.mark.parametrize("command", ["transcribe", "evaluate", "info", "average"])
@pytest.mark.parametrize("kind", MODEL_CASES)
def test_a_bad_model_file_is_one_line_and_never_runs_code(kind, command, overfit_model, tmp_path, capsys):
    model_path, manifest = overfit_model
    models = tmp_path / "models"
    models.mkdir()
    bad = bad_model(kind, model_path, models)
    before = snapshot(models)
    args = {"transcribe": ["transcribe", "--model", bad, manifest],
            "evaluate": ["evaluate", "--model", bad, "--manifest", manifest, "--out", tmp_path / "eval"],
            "info": ["info", bad],
            "average": ["average", bad, "--out", tmp_path / "averaged.pt"]}[command]
    assert main([str(a) for a in args]) == 1
    out, err = capsys.readouterr()
    assert one_error_line(err, command).startswith(f"asr {command}: error: {bad}: {MODEL_CASES[kind]}"), err
    assert out == "" and not (models / "MARKER").exists() and snapshot(models) == before
    assert not (tmp_path / "averaged.pt").exists() and not (tmp_path / "eval").exists()


def test_averaging_checkpoints_of_different_models_is_one_line(overfit_model, tmp_path, capsys):
    model_path, _ = overfit_model
    raw = torch.load(model_path, weights_only=True)
    raw["state_dict"]["ctc.bias"] = torch.zeros(3)
    torch.save(raw, tmp_path / "other.pt")
    assert main(["average", model_path, str(tmp_path / "other.pt"), "--out", str(tmp_path / "avg.pt")]) == 1
    assert one_error_line(capsys.readouterr().err, "average") == (
        f"asr average: error: {tmp_path / 'other.pt'}: a checkpoint of another model than {model_path} (its weights "
        "differ in names or shapes), which cannot be averaged with it")
    assert not (tmp_path / "avg.pt").exists()


# ---- --debug ------------------------------------------------------------------------------------

def test_debug_shows_the_traceback_and_without_it_there_is_one_line(tmp_path):
    text = tmp_path / "text.pt"
    text.write_text("not a model\n")
    plain = run_asr("info", text)
    assert plain.returncode == 1 and plain.stderr == (f"asr info: error: {text}: not a readable checkpoint: not a "
                                                      "PyTorch file (neither a zip archive nor a pickle)\n")
    debug = run_asr("--debug", "info", text)
    assert debug.returncode == 1 and debug.stderr.count("Traceback (most recent call last)") == 2, debug.stderr
    assert "which was reported as:" in debug.stderr  # torch's own error first, then ours
    assert debug.stderr.splitlines()[-1] == plain.stderr.strip()


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_exception_is_one_line_naming_it_unless_debug(debug, monkeypatch, capsys):
    import asr.checkpoint

    def broken(path):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(asr.checkpoint, "model_card", broken)
    assert main(["--debug"] * debug + ["info", "model.pt"]) == 1
    err = capsys.readouterr().err
    last = ("asr info: internal error: ZeroDivisionError: division by zero second line (run 'asr --debug info ...' "
            "for the traceback, and please report it)")
    assert err.splitlines()[-1] == last
    assert ("Traceback" in err) == debug and (err.count("\n") == 1) != debug


# ---- outputs that cannot be written -------------------------------------------------------------

def file_size_limit(limit: int):
    """preexec_fn: writes past `limit` bytes fail with EFBIG, as on a full disk."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("command", ["transcribe", "average", "evaluate"])
def test_a_full_disk_leaves_the_earlier_output_intact_and_no_temporary_file(command, overfit_model, tmp_path):
    model_path, manifest = overfit_model
    out = tmp_path / "out"
    out.mkdir()
    existing = out / ("hyp.jsonl" if command == "transcribe" else "model.pt")
    existing.write_bytes(b"earlier results\n" * 200)  # bigger than the limit: only new writes fail
    args = {"transcribe": ["transcribe", "--model", model_path, "--beam-size", "1", "--out", existing, "--overwrite",
                           manifest],
            "average": ["average", model_path, "--out", existing, "--overwrite"],
            "evaluate": ["evaluate", "--model", model_path, "--manifest", manifest, "--out", out / "eval",
                         "--plots", "0", "--beam-size", "1"]}[command]
    before = snapshot(out)
    run = run_asr(*args, preexec_fn=file_size_limit(1000))
    target = out / "eval" / "results.jsonl" if command == "evaluate" else existing
    kept = "" if command == "evaluate" else "; the earlier file is unchanged"
    assert run.returncode == 1 and run.stderr.splitlines()[-1] == (f"asr {command}: error: {target}: cannot be "
                                                                   f"written (File too large){kept}"), run.stderr
    assert one_error_line(run.stderr, command)
    assert snapshot(out) == before  # nothing new, nothing changed, no .tmp-* left


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(overfit_model, tmp_path):
    """A run resumed for a second epoch, whose checkpoints no longer fit: it stops with one line, and
    checkpoints/last.pt is still the first epoch's, with no temporary file beside it."""
    _, manifest = overfit_model
    config = tmp_path / "c.yaml"
    config.write_text("preset: tiny\nepochs: 1\nnum_workers: 0\nthreads: 1\naudio_cache: false\n")
    exp = tmp_path / "exp"
    args = ["train", "--config", config, "--train", manifest, "--valid", manifest, "--exp-dir", exp]
    assert main([str(a) for a in args]) == 0
    checkpoints = snapshot(exp / "checkpoints")
    last = exp / "checkpoints" / "last.pt"
    run = run_asr(*args, "--resume", "--set", "epochs=2", preexec_fn=file_size_limit(last.stat().st_size // 2))
    assert run.returncode == 1, run.stderr
    line = one_error_line(run.stderr, "train")
    assert line.startswith(f"asr train: error: {exp / 'checkpoints'}/epoch2.pt: cannot be written (File too large)")
    assert snapshot(exp / "checkpoints") == checkpoints
    assert torch.load(last, weights_only=True)["training"]["epoch"] == 1
