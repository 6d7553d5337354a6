"""recipes/aishell/run.sh end to end on a tiny AISHELL-1 in the layout the real corpus ships in:
data_aishell.tgz holding data_aishell/transcript/aishell_transcript_v0.8.txt (word-segmented) and
data_aishell/wav/<speaker>.tar.gz archives (train/S0002/BAC009S0002W0122.wav ...), 16 kHz 16-bit WAV
spoken by espeak-ng's Mandarin pinyin voice (tones where espeak-ng or the voice is missing)."""
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import yaml

from asr.train_lm import lm_train_config

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "aishell" / "run.sh"
RATE = 16000

# id -> (split, the transcript line's words, tone-numbered pinyin spoken for it)
UTTERANCES = {
    "BAC009S0002W0122": ("train", "而 对 楼市 成交 抑制 作用 最 大 的 限 购",
                         "er2 dui4 lou2 shi4 cheng2 jiao1 yi4 zhi4 zuo4 yong4 zui4 da4 de5 xian4 gou4"),
    "BAC009S0002W0123": ("train", "也 成为 地方 政府 的 眼中 钉",
                         "ye3 cheng2 wei2 di4 fang1 zheng4 fu3 de5 yan3 zhong1 ding1"),
    "BAC009S0002W0124": ("train", "自 六月 底 呼和浩特 市 率先 宣布 取消 限 购 后",
                         "zi4 liu4 yue4 di3 hu1 he2 hao4 te4 shi4 shuai4 xian1 xuan1 bu4 qu3 xiao1 xian4 gou4 hou4"),
    "BAC009S0003W0121": ("train", "北京 的 房价 上涨", "bei3 jing1 de5 fang2 jia4 shang4 zhang3"),
    "BAC009S0003W0122": ("train", "市场 成交 量 下降", "shi4 chang3 cheng2 jiao1 liang4 xia4 jiang4"),
    "BAC009S0003W0123": ("train", "政府 取消 限 购", "zheng4 fu3 qu3 xiao1 xian4 gou4"),
    "BAC009S0724W0121": ("dev", "广州市 房地产 中介 协会 分析",
                         "guang3 zhou1 shi4 fang2 di4 chan3 zhong1 jie4 xie2 hui4 fen1 xi1"),
    "BAC009S0724W0122": ("dev", "楼市 成交 量 上涨", "lou2 shi4 cheng2 jiao1 liang4 shang4 zhang3"),
    # one test sentence in training characters, one mostly not (as the real test set has a few such)
    "BAC009S0764W0121": ("test", "北京 市场 成交 下降", "bei3 jing1 shi4 chang3 cheng2 jiao1 xia4 jiang4"),
    "BAC009S0764W0122": ("test", "甚至 出现 交易 停滞", "shen4 zhi4 chu1 xian4 jiao1 yi4 ting2 zhi4"),
}
# a recording that the transcript leaves out, as some real ones are
UNTRANSCRIBED = ("BAC009S0002W0999", "train", "ta1 men5 shuo1")
SPEAKERS = {"train": {"S0002", "S0003"}, "dev": {"S0724"}, "test": {"S0764"}}
# the recipe's conf/train.yaml made tiny; the decoding options (stored in model.pt) keep the search short
TINY = ["preset=tiny", "epochs=2", "amp=none", "max_batch_seconds=20", "num_workers=0", "warmup_steps=10",
        "keep_best=2", "average_best=2", "valid_decode_every=1", "threads=1", "decoding.beam_size=3",
        "decoding.max_tokens=20"]
# stage 3 reads lm.yaml beside the training config and takes no --set: a tiny one beside a copy of train.yaml
TINY_LM = dict(lm=dict(hidden=32, layers=1), epochs=2, threads=1, seed=0)


def speaker_of(uid):
    return uid[6:11]


def speak(pinyin, path, scratch):
    """16 kHz 16-bit mono WAV of the pinyin by espeak-ng; one tone per syllable, pitched by its tone
    number, where espeak-ng or its cmn-latn-pinyin voice is missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = scratch / "espeak.wav"
    raw.unlink(missing_ok=True)
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-w", str(raw), pinyin], capture_output=True)
    if raw.exists() and sf.info(str(raw)).frames > 0:
        audio, rate = sf.read(str(raw), dtype="float32")
        audio = soxr.resample(audio, rate, RATE)
    else:
        t = np.arange(int(0.25 * RATE)) / RATE
        audio = np.concatenate([0.3 * np.sin(2 * np.pi * (150 + 40 * int(s[-1])) * t) for s in pinyin.split()])
    sf.write(str(path), audio.astype(np.float32), RATE, subtype="PCM_16")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny corpus as a folder (holding data_aishell/) and as data_aishell.tgz."""
    top = tmp_path_factory.mktemp("aishell")
    base, staging = top / "corpus" / "data_aishell", top / "staging"
    (base / "transcript").mkdir(parents=True)
    (base / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "".join(f"{uid} {words}\n" for uid, (_, words, _) in sorted(UTTERANCES.items())), encoding="utf-8")
    members = {}  # speaker -> [(file, name inside its archive)]
    recordings = [(uid, split, pinyin) for uid, (split, _, pinyin) in UTTERANCES.items()] + [UNTRANSCRIBED]
    for uid, split, pinyin in recordings:
        name = f"{split}/{speaker_of(uid)}/{uid}.wav"
        speak(pinyin, staging / name, top)
        members.setdefault(speaker_of(uid), []).append((staging / name, name))
    (base / "wav").mkdir()
    for speaker, files in sorted(members.items()):
        with tarfile.open(base / "wav" / f"{speaker}.tar.gz", "w:gz") as tar:
            for path, name in files:
                tar.add(path, name)
    archive = top / "data_aishell.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(base, "data_aishell")
    return base.parent, archive


def run_recipe(*args):
    result = subprocess.run(["bash", str(RUN), *args], capture_output=True, encoding="utf-8", timeout=300)
    assert result.returncode == 0, f"run.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def read_jsonl(path):
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]


def is_chinese(text):
    return bool(text) and all("\u4e00" <= c <= "\u9fff" for c in text)


def test_recipe_lm_config_loads():
    cfg = lm_train_config([], str(RUN.parent / "conf" / "lm.yaml"))
    assert cfg.lm == dict(hidden=650, layers=2) and cfg.max_minutes > 0


def test_recipe_runs_end_to_end_on_the_corpus_archive(corpus, tmp_path):
    folder, archive = corpus
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(RUN.parent / "conf" / "train.yaml", conf / "train.yaml")
    (conf / "lm.yaml").write_text(yaml.safe_dump(TINY_LM), encoding="utf-8")
    exp = tmp_path / "exp"
    run = run_recipe("--corpus-dir", str(archive), "--exp-dir", str(exp), "--config", str(conf / "train.yaml"),
                     *[arg for item in TINY for arg in ("--set", item)])
    for stage in range(1, 6):
        assert f"== stage {stage}:" in run.stdout
    assert f"skipped 1 (no transcript): {UNTRANSCRIBED[0]}" in run.stdout

    data = exp / "data"
    manifests = {split: read_jsonl(data / f"{split}.jsonl") for split in ("train", "dev", "test")}
    for split, entries in manifests.items():
        expected = sorted(uid for uid, (s, _, _) in UTTERANCES.items() if s == split)
        assert [e["id"] for e in entries] == expected
        assert {e["speaker"] for e in entries} == SPEAKERS[split]
        for e in entries:
            assert e["text"] == "".join(UTTERANCES[e["id"]][1].split()) and is_chinese(e["text"])
            assert e["lang"] == "zh"
            # unpacked from the speaker's archive under the data folder, never into the corpus
            assert e["audio"] == str(data / "downloads" / "aishell_wav" / split / e["speaker"] / f"{e['id']}.wav")
            assert e["duration"] == pytest.approx(sf.info(e["audio"]).duration, abs=1e-3)
            assert sf.info(e["audio"]).samplerate == RATE
    assert "而对楼市成交抑制作用最大的限购" in (data / "train.jsonl").read_bytes().decode("utf-8")  # UTF-8, not \u escapes

    model = torch.load(exp / "model.pt", weights_only=True)
    assert model["lang"] == "zh" and model["config"]["d_model"] == 64  # the --set preset, not the config's base
    training_characters = {c for e in manifests["train"] for c in e["text"]}
    assert training_characters <= set(model["tokens"])
    assert (exp / "lm.pt").is_file() and (exp / "metrics.jsonl").is_file()

    summary = json.loads((exp / "eval_test" / "summary.json").read_text(encoding="utf-8"))
    assert isinstance(summary["cer"], float) and summary["cer"] >= 0 and summary["num_utterances"] == 2
    results = read_jsonl(exp / "eval_test" / "results.jsonl")
    assert [r["ref"] for r in results] == [e["text"] for e in manifests["test"]]
    vocabulary = set(model["tokens"])
    assert all(set(r["hyp"]) <= vocabulary and " " not in r["hyp"] for r in results)

    # stage 5: "path<TAB>text" for the first test recording, in the model's characters
    sample = next(line for line in run.stdout.splitlines() if line.startswith(manifests["test"][0]["audio"] + "\t"))
    assert set(sample.split("\t", 1)[1]) <= vocabulary


def test_recipe_reads_the_corpus_folder_without_writing_into_it(corpus, tmp_path):
    folder, _ = corpus
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    exp = tmp_path / "exp"
    run = run_recipe("--corpus-dir", str(folder), "--exp-dir", str(exp), "--stop-stage", "1")
    assert "== stage 2:" not in run.stdout
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before
    texts = {e["id"]: e["text"] for split in ("train", "dev", "test")
             for e in read_jsonl(exp / "data" / f"{split}.jsonl")}
    assert texts == {uid: "".join(words.split()) for uid, (_, words, _) in UTTERANCES.items()}
