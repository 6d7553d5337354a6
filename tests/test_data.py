import json
import os

import pytest
import torch

from asr.audio import audio_duration
from asr.data import (IGNORE_ID, BucketBatchSampler, Example, ManifestError, SpeechDataset, Utterance, collate,
                      filter_utterances, load_manifest, write_manifest)
from asr.errors import ASRError
from asr.text import CharTokenizer
from data_prep.fsdd import DIGITS



@pytest.fixture(scope="module")
def fsdd_manifest(shared_data, tmp_path_factory):
    """Six real FSDD clips (8 kHz), transcript from the digit in the file name."""
    recordings = shared_data / "fsdd" / "recordings"
    utts = []
    for name in ["0_george_0", "3_jackson_1", "7_lucas_2", "9_nicolas_3", "5_yweweler_4", "1_george_5"]:
        path = str(recordings / f"{name}.wav")
        utts.append(Utterance(id=name, audio=path, duration=audio_duration(path), text=DIGITS[int(name[0])]))
    path = tmp_path_factory.mktemp("fsdd") / "train.jsonl"
    write_manifest(str(path), utts)
    return path


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_manifest_relative_paths_and_other_toolkits_keys(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", [
        json.dumps({"audio": "wav/a.wav", "duration": 1.5, "text": "a"}),
        "",
        json.dumps({"audio_filepath": "/abs/b.flac", "duration": 2, "text": "b b"}),  # NeMo
        json.dumps({"key": "utt3", "wav": "../c.wav", "txt": "你好"}),  # WeNet
    ])
    a, b, c = load_manifest(path)
    assert (a.id, a.audio, a.duration, a.text) == ("a", str(tmp_path / "wav" / "a.wav"), 1.5, "a")
    assert (b.id, b.audio, b.duration, b.text) == ("b", "/abs/b.flac", 2.0, "b b")
    assert (c.id, c.audio, c.duration, c.text) == ("utt3", str(tmp_path.parent / "c.wav"), -1.0, "你好")


@pytest.mark.parametrize("line, message", [
    ('{"audio": "a.wav"', "m.jsonl:2: not valid JSON"),
    ('["a.wav"]', "m.jsonl:2: expected a JSON object"),
    ('{"text": "hi"}', "m.jsonl:2: missing 'audio'"),
    ('{"audio": "a.wav", "duration": "long"}', "m.jsonl:2: 'duration' and 'offset' must be numbers"),
])
def test_malformed_manifest_line_is_named(tmp_path, line, message):
    path = write_lines(tmp_path / "m.jsonl", ['{"audio": "ok.wav"}', line])
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest file"):
        load_manifest(str(tmp_path / "none.jsonl"))


def test_write_manifest_is_atomic(tmp_path):
    path = tmp_path / "m.jsonl"
    assert write_manifest(str(path), [Utterance("u1", "/a.wav", 1.0, "old")]) == 1

    def failing():
        yield Utterance("u2", "/b.wav", 2.0, "new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_manifest(str(path), failing())
    assert [u.text for u in load_manifest(str(path))] == ["old"]
    assert os.listdir(tmp_path) == ["m.jsonl"]


def test_filter_utterances_reports_drops_and_measures_missing_durations(fsdd_manifest):
    utts = load_manifest(str(fsdd_manifest))  # 0.298, 0.4695, 0.4776, 0.4358, 0.501, 0.618 s
    utts[1].duration = -1.0  # as read from a manifest without durations
    kept, dropped = filter_utterances(utts, 0.3, 0.5)
    assert [u.id for u in kept] == ["3_jackson_1", "7_lucas_2", "9_nicolas_3"] and dropped == 3
    assert kept[0].duration == pytest.approx(0.4695)


def test_dataset_loads_real_clips_at_16khz(fsdd_manifest):
    tokenizer = CharTokenizer.build(DIGITS)
    dataset = SpeechDataset(fsdd_manifest, tokenizer)
    assert len(dataset) == 6
    for i, utt in enumerate(dataset.utterances):
        example = dataset[i]
        assert example.id == utt.id
        assert example.waveform.dtype == torch.float32 and example.waveform.ndim == 1
        assert abs(len(example.waveform) - 16000 * utt.duration) <= 1  # resampled from 8 kHz
        assert 0 < example.waveform.abs().max() <= 1
        assert tokenizer.decode(example.tokens.tolist()) == DIGITS[int(utt.id[0])]
        assert example.tokens.dtype == torch.long


def test_dataset_reads_a_segment_and_normalises_text(fsdd_manifest):
    utt = load_manifest(str(fsdd_manifest))[0]
    segment = Utterance("seg", utt.audio, duration=0.1, text="Zero!", offset=0.05)
    example = SpeechDataset([segment], CharTokenizer.build(DIGITS))[0]
    assert len(example.waveform) == 1600
    assert example.tokens.tolist() == CharTokenizer.build(DIGITS).encode("zero")


def test_collate_pads_waveforms_with_zeros_and_tokens_with_ignore_id():
    batch = collate([Example("a", torch.ones(3), torch.tensor([5, 6])),
                     Example("b", torch.full((5,), 0.5), torch.tensor([7, 8, 9]))])
    assert batch.ids == ["a", "b"]
    assert batch.waveforms.tolist() == [[1, 1, 1, 0, 0], [0.5] * 5]
    assert batch.waveform_lengths.tolist() == [3, 5]
    assert batch.tokens.tolist() == [[5, 6, IGNORE_ID], [7, 8, 9]]
    assert batch.token_lengths.tolist() == [2, 3]


def test_collate_of_real_clips(fsdd_manifest):
    dataset = SpeechDataset(fsdd_manifest, CharTokenizer.build(DIGITS))
    batch = collate([dataset[i] for i in range(len(dataset))])
    lengths = [len(dataset[i].waveform) for i in range(len(dataset))]
    assert batch.waveforms.shape == (6, max(lengths)) and batch.waveform_lengths.tolist() == lengths
    assert batch.tokens.shape == (6, 5)  # "three" and "seven"
    assert batch.token_lengths.tolist() == [4, 5, 5, 4, 4, 3]


# 100 durations from 0.5 s to 5.45 s, in an order that is not sorted
DURATIONS = [0.5 + 0.05 * ((i * 37) % 100) for i in range(100)]


def epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_sampler_covers_every_index_once_within_budget():
    sampler = BucketBatchSampler(DURATIONS, max_seconds=20.0, max_batch_size=8)
    batches = epoch_batches(sampler, 0)
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert len(batches) == len(sampler) == 19
    for batch in batches:
        assert len(batch) <= 8 and len(batch) * max(DURATIONS[i] for i in batch) <= 20.0
    assert sorted(map(len, batches)) == [3] * 4 + [4] * 5 + [5] * 3 + [6, 7] + [8] * 5  # 3 x 5.45 s = 16.35 s


def test_sampler_order_depends_only_on_seed_and_epoch():
    a, b = BucketBatchSampler(DURATIONS, 20.0, seed=1), BucketBatchSampler(DURATIONS, 20.0, seed=1)
    assert epoch_batches(a, 3) == epoch_batches(b, 3)
    assert epoch_batches(a, 4) != epoch_batches(b, 3)
    assert epoch_batches(BucketBatchSampler(DURATIONS, 20.0, seed=2), 3) != epoch_batches(b, 3)
    assert sorted(map(sorted, epoch_batches(a, 4))) == sorted(map(sorted, epoch_batches(b, 3)))  # same buckets


@pytest.mark.parametrize("max_batch_size", [None, 8])
def test_ranks_split_every_global_batch_between_them(max_batch_size):
    single = BucketBatchSampler(DURATIONS, 20.0, max_batch_size)
    ranks = [BucketBatchSampler(DURATIONS, 20.0, max_batch_size, num_replicas=2, rank=r) for r in (0, 1)]
    for epoch in (0, 1):
        everything = epoch_batches(single, epoch)
        seen = [epoch_batches(s, epoch) for s in ranks]
        assert len(seen[0]) == len(seen[1]) == len(everything)
        for whole, part0, part1 in zip(everything, *seen):
            assert part0 and part1 and sorted(part0 + part1) == sorted(whole)
            assert abs(len(part0) - len(part1)) <= 1


def test_every_batch_has_an_utterance_for_each_process():
    sampler = BucketBatchSampler(DURATIONS, max_seconds=1.0, num_replicas=3, rank=2)
    assert all(len(b) >= 1 for b in epoch_batches(sampler, 0))
    assert sorted(i for b in sampler.batches for i in b) == list(range(len(DURATIONS)))


def test_resume_mid_epoch_yields_exactly_the_remaining_batches():
    full = epoch_batches(BucketBatchSampler(DURATIONS, 20.0, seed=5), 2)
    interrupted = BucketBatchSampler(DURATIONS, 20.0, seed=5)
    interrupted.set_epoch(2)
    iterator = iter(interrupted)
    first = [next(iterator) for _ in range(7)]
    state = interrupted.state_dict()
    assert state == dict(epoch=2, position=7, batches=len(full))

    resumed = BucketBatchSampler(DURATIONS, 20.0, seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the same epoch again: taken up where it stopped, not restarted
    assert first + list(resumed) == full
    assert list(resumed) == []  # the pass is over until the next epoch
    assert len(epoch_batches(resumed, 3)) == len(full)


def test_state_counts_the_batches_the_caller_finished():
    sampler = BucketBatchSampler(DURATIONS, 20.0)
    sampler.load_state_dict(dict(epoch=0, position=4, batches=len(sampler)))
    iterator = iter(sampler)
    for _ in range(5):  # a DataLoader worker prefetching ahead of training
        next(iterator)
    assert sampler.state_dict()["position"] == 9
    assert sampler.state_dict(batches_done=3)["position"] == 7


def test_sampler_rejects_bad_settings_and_a_mismatched_state():
    with pytest.raises(ASRError, match="must be positive"):
        BucketBatchSampler(DURATIONS, 0.0)
    with pytest.raises(ASRError, match="100 utterances are too few for 101 processes"):
        BucketBatchSampler(DURATIONS, 20.0, num_replicas=101)
    with pytest.raises(ASRError, match="cannot resume mid-epoch"):
        BucketBatchSampler(DURATIONS, 10.0).load_state_dict(dict(epoch=0, position=3, batches=18))
    finished = BucketBatchSampler(DURATIONS, 10.0)
    finished.load_state_dict(dict(epoch=0, position=18, batches=18))  # a finished epoch is always resumable
    assert list(finished) == [] and len(epoch_batches(finished, 1)) == len(finished)
