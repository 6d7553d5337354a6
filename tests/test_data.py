import json

import numpy as np
import pytest
import torch

from asr.audio import audio_duration, load_audio
from asr.data import (IGNORE_ID, BucketBatchSampler, Example, SpeechDataset, collate, feature_statistics,
                      filter_segments)
from asr.errors import ASRError
from asr.features import GlobalCMVN, LogMel, log_mel
from asr.segments import Segment, load_manifest, read_manifest, write_manifest
from asr.text import CharTokenizer
from data_prep.fsdd import DIGITS



@pytest.fixture(scope="module")
def fsdd_manifest(shared_data, tmp_path_factory):
    """Six real FSDD clips (8 kHz), transcript from the digit in the file name."""
    recordings = shared_data / "fsdd" / "recordings"
    utts = []
    for name in ["0_george_0", "3_jackson_1", "7_lucas_2", "9_nicolas_3", "5_yweweler_4", "1_george_5"]:
        path = str(recordings / f"{name}.wav")
        utts.append(Segment(id=name, path=path, duration=audio_duration(path), text=DIGITS[int(name[0])]))
    path = tmp_path_factory.mktemp("fsdd") / "train.jsonl"
    write_manifest(str(path), utts)
    return path


def test_filter_segments_reports_drops_and_measures_missing_durations(fsdd_manifest):
    utts = load_manifest(str(fsdd_manifest))  # 0.298, 0.4695, 0.4776, 0.4358, 0.501, 0.618 s
    utts[1].duration = -1.0  # as read from a manifest without durations
    kept, dropped = filter_segments(utts, 0.3, 0.5)
    assert [u.id for u in kept] == ["3_jackson_1", "7_lucas_2", "9_nicolas_3"] and dropped == 3
    assert kept[0].duration == pytest.approx(0.4695)


def test_dataset_loads_real_clips_at_16khz(fsdd_manifest):
    tokenizer = CharTokenizer.build(DIGITS)
    dataset = SpeechDataset(fsdd_manifest, tokenizer)
    assert len(dataset) == 6
    for i, utt in enumerate(dataset.segments):
        example = dataset[i]
        assert example.id == utt.id
        assert example.waveform.dtype == torch.float32 and example.waveform.ndim == 1
        assert abs(len(example.waveform) - 16000 * utt.duration) <= 1  # resampled from 8 kHz
        assert 0 < example.waveform.abs().max() <= 1
        assert tokenizer.decode(example.tokens.tolist()) == DIGITS[int(utt.id[0])]
        assert example.tokens.dtype == torch.long


def test_dataset_reads_a_segment_and_normalises_text(fsdd_manifest):
    utt = load_manifest(str(fsdd_manifest))[0]
    segment = Segment("seg", utt.path, duration=0.1, text="Zero!", offset=0.05)
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
    """The indices of an epoch's batches (checking each draw's epoch and that slots are unique)."""
    sampler.set_epoch(epoch)
    batches = list(sampler)
    slots = [d.slot for b in batches for d in b]
    assert all(d.epoch == epoch for b in batches for d in b) and len(set(slots)) == len(slots)
    return [[d.index for d in b] for b in batches]


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
    assert sorted(i for b in sampler.draws_and_batches(0)[1] for i in b) == list(range(len(DURATIONS)))


@pytest.mark.parametrize("options", [{}, dict(weights=[0.5] * 100), dict(concat="joined")])
def test_resume_mid_epoch_yields_exactly_the_remaining_batches(options):
    """Also where each epoch draws its own number of batches (weighted or joined draws)."""
    from asr.augment import AugmentConfig

    if options.get("concat"):
        options = dict(concat=AugmentConfig(concat_prob=0.3, concat_seconds=12.0))
    sampler = lambda: BucketBatchSampler(DURATIONS, 20.0, seed=5, **options)  # noqa: E731
    # an epoch whose batch count differs from the first's, where epochs differ
    epoch = next((e for e in range(2, 30) if len(epoch_batches(sampler(), e)) != len(epoch_batches(sampler(), 0))),
                 2)
    full = epoch_batches(sampler(), epoch)
    interrupted = sampler()
    interrupted.set_epoch(epoch)
    iterator = iter(interrupted)
    first = [next(iterator) for _ in range(7)]
    state = interrupted.state_dict()
    assert state == dict(epoch=epoch, position=7, batches=len(full))

    resumed = sampler()
    resumed.load_state_dict(state)
    resumed.set_epoch(epoch)  # the same epoch again: taken up where it stopped, not restarted
    indices = lambda batches: [[d.index for d in b] for b in batches]  # noqa: E731
    assert indices(first) + indices(resumed) == full
    assert list(resumed) == []  # the pass is over until the next epoch
    assert epoch_batches(resumed, epoch + 1) == epoch_batches(sampler(), epoch + 1)


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


JFK = "clips/en/whisper_jfk.flac"  # 11 s, 44.1 kHz stereo
DIGIT = "fsdd/recordings/3_jackson_7.wav"  # 8 kHz
CARDS = "clips/en/pocketsphinx_cards_005.wav"
MANDARIN = "clips/zh/wenet_aishell-BAC009S0724W0121.wav"


# -- global CMVN of a training set ----------------------------------------------------------------------------------

@pytest.fixture
def cmvn_manifest(shared_data, tmp_path):
    utterances = [Segment("jfk", str(shared_data / JFK), 11.0, "and so my fellow americans"),
                  Segment("digit", str(shared_data / DIGIT), 0.489, "three"),
                  Segment("cards", str(shared_data / CARDS), 1.25, "segment", offset=0.5),
                  Segment("zh", str(shared_data / MANDARIN), 4.281, "")]
    path = tmp_path / "train.jsonl"
    write_manifest(str(path), utterances)
    segments = [load_audio(str(shared_data / JFK)), load_audio(str(shared_data / DIGIT)),
                load_audio(str(shared_data / CARDS), offset=0.5, duration=1.25),
                load_audio(str(shared_data / MANDARIN))]
    return str(path), [log_mel(s).double().numpy() for s in segments]


def test_cmvn_from_manifest_equals_statistics_of_all_frames(cmvn_manifest):
    path, per_utterance = cmvn_manifest
    frames = np.concatenate(per_utterance)
    cmvn = feature_statistics((s.load(16000) for s in read_manifest(path)), LogMel())
    assert int(cmvn.count) == len(frames) == 1101 + 49 + 126 + 429
    np.testing.assert_allclose(cmvn.mean.numpy(), frames.mean(0), rtol=0, atol=1e-5)
    np.testing.assert_allclose(cmvn.std.numpy(), frames.std(0), rtol=1e-5)
    normalised = cmvn(torch.from_numpy(frames).float()).double()
    np.testing.assert_allclose(normalised.mean(0).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(0, correction=0).numpy(), 1, atol=1e-4)


def test_cmvn_reads_at_most_max_utterances(cmvn_manifest):
    path, per_utterance = cmvn_manifest
    cmvn = feature_statistics(SpeechDataset(path, CharTokenizer.build(["a"])).all_samples(2), LogMel())
    frames = np.concatenate(per_utterance[:2])
    assert int(cmvn.count) == len(frames)
    np.testing.assert_allclose(cmvn.mean.numpy(), frames.mean(0), rtol=0, atol=1e-5)


def test_cmvn_travels_in_state_dict_and_json(cmvn_manifest):
    path, _ = cmvn_manifest
    cmvn = feature_statistics(SpeechDataset(path, CharTokenizer.build(["a"])).all_samples(2), LogMel())
    assert set(cmvn.state_dict()) == {"mean", "std", "count"}
    loaded = GlobalCMVN(80)
    assert int(loaded.count) == 0
    loaded.load_state_dict(cmvn.state_dict())
    from_json = GlobalCMVN.from_dict(json.loads(json.dumps(cmvn.to_dict())))
    copied = GlobalCMVN(80).copy_(cmvn)
    for other in (loaded, from_json, copied):
        assert torch.equal(other.mean, cmvn.mean) and torch.equal(other.std, cmvn.std)
        assert int(other.count) == int(cmvn.count)


def test_cmvn_of_an_empty_manifest_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(ASRError, match="no audio"):
        feature_statistics((s.load(16000) for s in read_manifest(str(path))), LogMel())


def test_sampling_weights_draw_each_corpus_in_proportion():
    # 100 utterances of corpus A (weight 2) and 100 of corpus B (weight 0.25)
    durations = DURATIONS + DURATIONS
    weights = [2.0] * 100 + [0.25] * 100
    sampler = BucketBatchSampler(durations, 20.0, seed=3, weights=weights)
    counts = np.zeros(200)
    for epoch in range(8):
        indices = [i for b in epoch_batches(sampler, epoch) for i in b]
        assert sum(i < 100 for i in indices) == 200  # every A utterance exactly twice
        counts += np.bincount(indices, minlength=200)
    assert (counts[:100] == 16).all()
    assert 0.15 < counts[100:].mean() / 8 < 0.35  # about a quarter of B per epoch, different ones
    assert (counts[100:] > 0).sum() > 70
    again = BucketBatchSampler(durations, 20.0, seed=3, weights=weights)
    assert epoch_batches(again, 5) == epoch_batches(sampler, 5)  # reproducible per (seed, epoch)


def test_dataset_augments_draws_reproducibly_and_never_plain_indices(fsdd_manifest, tmp_path):
    from asr.augment import AugmentConfig
    from asr.data import Draw

    tokenizer = CharTokenizer.build(DIGITS)
    augment = AugmentConfig(speed_factors=[0.9, 1.1], noise_prob=1.0)
    dataset = SpeechDataset(fsdd_manifest, tokenizer, augment=augment, seed=1, cache_dir=str(tmp_path / "cache"))
    plain = SpeechDataset(fsdd_manifest, tokenizer)
    first, again = dataset[Draw(2, 0, 7)].waveform, dataset[Draw(2, 0, 7)].waveform
    other = dataset[Draw(2, 1, 7)].waveform
    assert torch.equal(first, again) and not (len(first) == len(other) and torch.equal(first, other))
    assert abs(len(first) / len(plain[2].waveform) - 1) > 0.05  # sped up or slowed down by 10 %
    assert torch.equal(dataset[2].waveform, plain[2].waveform)  # validation-style access: untouched


def test_joined_draws_cover_every_draw_once_within_the_length():
    from asr.augment import AugmentConfig
    from asr.data import join_draws

    cfg = AugmentConfig(concat_prob=0.3, concat_seconds=20.0, concat_pause=[0.1, 0.4])
    examples = join_draws(list(range(100)), DURATIONS, cfg, np.random.default_rng(0))
    assert sorted(i for e in examples for i in e) == list(range(100))
    joined = [e for e in examples if len(e) > 1]
    assert len(joined) > 10
    for e in joined:  # pauses counted at their longest, so an example never passes concat_seconds
        assert sum(DURATIONS[i] for i in e) + 0.4 * (len(e) - 1) <= 20.0
    lengths = [sum(DURATIONS[i] for i in e) for e in joined]
    assert min(lengths) < 8 and max(lengths) > 14  # targets drawn uniformly: short and long ones
    none = AugmentConfig(concat_prob=0.0)
    assert all(len(e) == 1 for e in join_draws(list(range(100)), DURATIONS, none, np.random.default_rng(0)))


def test_sampler_hands_out_joined_draws_bucketed_by_their_total_length():
    from asr.augment import AugmentConfig

    cfg = AugmentConfig(concat_prob=0.5, concat_seconds=15.0)
    sampler = BucketBatchSampler(DURATIONS, max_seconds=30.0, seed=2, concat=cfg)
    sampler.set_epoch(1)
    draws = [d for b in sampler for d in b]
    assert sorted(i for d in draws for i in (d.index, *d.joined)) == list(range(100))
    assert any(len(d.joined) >= 2 for d in draws)
    sampler.set_epoch(2)
    assert [d.joined for b in sampler for d in b] != [d.joined for d in draws]  # joined anew each epoch
    plain = BucketBatchSampler(DURATIONS, max_seconds=30.0, seed=2, concat=AugmentConfig())
    assert epoch_batches(plain, 1) == epoch_batches(BucketBatchSampler(DURATIONS, 30.0, seed=2), 1)


def test_dataset_joins_a_draw_with_pauses_and_one_transcript(fsdd_manifest):
    from asr.augment import AugmentConfig
    from asr.data import Draw

    tokenizer = CharTokenizer.build([" ".join(DIGITS)])
    dataset = SpeechDataset(fsdd_manifest, tokenizer, augment=AugmentConfig(concat_pause=[0.2, 0.3]))
    pieces = [dataset[i] for i in (1, 3, 4)]
    example = dataset[Draw(1, 0, 5, (3, 4))]
    assert example.id == "3_jackson_1+9_nicolas_3+5_yweweler_4"
    assert tokenizer.decode(example.tokens.tolist()) == "three nine five"
    pause = len(example.waveform) - sum(len(p.waveform) for p in pieces)
    assert 2 * 0.2 * 16000 <= pause <= 2 * 0.3 * 16000
    first, second = pieces[0].waveform, pieces[1].waveform
    assert torch.equal(example.waveform[:len(first)], first)  # each piece intact, in order
    gap = example.waveform[len(first):len(example.waveform) - len(second) - len(pieces[2].waveform) - pause // 2]
    assert 0 < gap.abs().max() < 1e-3  # a pause of faint noise, not digital silence
    assert torch.equal(dataset[Draw(1, 0, 5, (3, 4))].waveform, example.waveform)
