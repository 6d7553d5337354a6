import tarfile

import numpy as np
import pytest
import soundfile as sf

from asr.segments import load_manifest
from data_prep.common import CorpusError, prepare_corpus


def prep(corpus_dir, out, *options):
    prepare_corpus("speechocean762", ["--corpus-dir", str(corpus_dir), "--out", str(out)] + [str(o) for o in options])
    return {split: load_manifest(str(out / f"{split}.jsonl"))
            for split in ("train", "dev", "test") if (out / f"{split}.jsonl").exists()}


@pytest.fixture(scope="module")
def shared(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("speechocean762")
    return out, prep(shared_data / "speechocean762", out)


def test_shared_copy_counts_and_speaker_disjoint_dev(shared):
    _, splits = shared
    assert {split: len(segments) for split, segments in splits.items()} == {"train": 2300, "dev": 200, "test": 2000}
    speakers = {split: {s.speaker for s in segments} for split, segments in splits.items()}
    assert (len(speakers["train"]), len(speakers["dev"]), len(speakers["test"])) == (115, 10, 100)
    assert not speakers["dev"] & speakers["train"] and not speakers["test"] & (speakers["train"] | speakers["dev"])
    assert all(s.lang == "en" and s.text == s.text.upper() for segments in splits.values() for s in segments)


def test_shared_copy_keeps_age_gender_and_header_durations(shared, shared_data):
    _, splits = shared
    segments = [s for split in splits.values() for s in split]
    assert all(isinstance(s.info["age"], int) and s.info["gender"] in ("m", "f") for s in segments)
    first = next(s for s in splits["train"] + splits["dev"] if s.id == "000010011")
    assert (first.speaker, first.text, first.info) == ("0001", "WE CALL IT BEAR", {"age": 6, "gender": "m",
                                                                          "age_group": "child"})
    for segment in (first, splits["test"][0]):
        assert segment.path.endswith(".opus")
        assert segment.duration == pytest.approx(sf.info(segment.path).duration, abs=1e-3)
    assert all(1.0 < s.duration < 25.0 for s in segments)
    assert sum(s.duration for s in splits["train"] + splits["dev"]) / 3600 == pytest.approx(2.88, abs=0.01)


def test_shared_copy_same_split_again_from_the_train_folder(shared, shared_data, tmp_path):
    out, _ = shared
    prep(shared_data / "speechocean762/train", tmp_path)  # a folder inside the corpus finds its root
    for split in ("train", "dev", "test"):
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (out / f"{split}.jsonl").read_bytes()


def original_tree(root):
    """The corpus as released: 16-bit WAVs under WAVE/, wav.scp paths relative to the corpus folder."""
    speakers = {"train": {"0001": (6, "m"), "0005": (25, "f"), "0006": (9, "f")}, "test": {"0024": (31, "m")}}
    for split, ages in speakers.items():
        folder = root / split
        folder.mkdir(parents=True)
        lines = {name: [] for name in ("wav.scp", "text", "utt2spk", "spk2age", "spk2gender")}
        for n, (speaker, (age, gender)) in enumerate(ages.items()):
            for take in range(2):
                uid = f"0{speaker}00{take + 1}{n}"
                path = f"WAVE/SPEAKER{speaker}/{uid}.WAV"
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                samples = 0.1 * np.sin(np.arange(16000 + 1600 * take) / 5.0)
                sf.write(str(root / path), samples, 16000, format="WAV", subtype="PCM_16")
                lines["wav.scp"].append(f"{uid}\t{path}")
                lines["text"].append(f"{uid}\tWE CALL IT BEAR" if take else f"{uid}\tIT'S NOT FISH")
                lines["utt2spk"].append(f"{uid}\t{speaker}")
            lines["spk2age"].append(f"{speaker}\t{age}")
            lines["spk2gender"].append(f"{speaker}\t{gender}")
        for name, rows in lines.items():
            (folder / name).write_text("\n".join(rows) + "\n")
    return root


def test_original_layout_with_wav_paths_from_the_corpus_root(tmp_path):
    corpus = original_tree(tmp_path / "data/speechocean762")
    splits = prep(tmp_path / "data", tmp_path / "out", "--dev-speakers", 1)  # a folder above the corpus
    assert {split: len(segments) for split, segments in splits.items()} == {"train": 4, "dev": 2, "test": 2}
    assert {s.speaker for s in splits["dev"]} == {"0005"} and "0005" not in {s.speaker for s in splits["train"]}
    test = {s.id: s for s in splits["test"]}["000240020"]
    assert test.path == str(corpus / "WAVE/SPEAKER0024/000240020.WAV")
    assert (test.text, test.speaker, test.lang, test.info, test.duration) == (
        "WE CALL IT BEAR", "0024", "en", {"age": 31, "gender": "m", "age_group": "adult"}, 1.1)
    other = prep(corpus, tmp_path / "other", "--dev-speakers", 1, "--seed", 1)
    assert {s.speaker for s in other["dev"]} == {"0001"}  # another seed, another draw
    assert prep(corpus, tmp_path / "none", "--dev-speakers", 0).keys() == {"train", "test"}
    with pytest.raises(CorpusError, match="--dev-speakers must be from 0 to 2"):
        prep(corpus, tmp_path / "all", "--dev-speakers", 3)


def test_release_archive_as_corpus_dir(tmp_path):
    corpus = original_tree(tmp_path / "speechocean762")
    archive = tmp_path / "speechocean762.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(corpus, "speechocean762")
    splits = prep(archive, tmp_path / "out", "--dev-speakers", 1)
    assert sum(map(len, splits.values())) == 8
    assert splits["test"][0].path.startswith(str(tmp_path / "out/downloads/speechocean762/WAVE/"))
