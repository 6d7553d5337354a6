import csv

import pytest

from asr.errors import ASRError
from asr.text import CharTokenizer, normalize_text


@pytest.fixture(scope="module")
def clips(shared_data):
    with open(shared_data / "clips" / "clips.tsv", encoding="utf-8", newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f, delimiter="\t")}


def test_english_is_lowercased_without_punctuation(clips):
    jfk = clips["whisper_jfk"]["text"]
    assert normalize_text(jfk + ".") == ("and so my fellow americans ask not what your country can do for you "
                                         "ask what you can do for your country")
    assert normalize_text("“Don’t” — rock'n'roll,  'tis   dogs' WELL-known 5%") == \
        "don't rock'n'roll tis dogs well known 5"


def test_english_options_keep_punctuation_and_case():
    assert normalize_text("Hello,   World!", keep_punctuation=True, lowercase=False) == "Hello, World!"
    assert normalize_text("Ｈｅｌｌｏ\u3000World") == "hello world"  # NFKC: full-width letters and space


def test_chinese_drops_punctuation_spaces_and_full_width_forms(clips):
    assert normalize_text("你好，世界！ＡＢＣ１２３", "zh") == "你好世界abc123"
    assert normalize_text("我用 iPhone X 打电话。《三体》、“好”？", "zh") == "我用iphonex打电话三体好"
    aishell = clips["wenet_aishell-BAC009S0724W0121"]["text"]
    assert normalize_text(" ".join(aishell) + "。", "zh") == aishell == "广州市房地产中介协会分析"


def test_round_trip_english_and_mandarin(clips):
    for lang in ("en", "zh"):
        texts = [normalize_text(c["text"], lang) for c in clips.values() if c["lang"] == lang]
        tokenizer = CharTokenizer.build(texts)
        for text in texts:
            assert tokenizer.decode(tokenizer.encode(text)) == text
        assert not tokenizer.unknown_counts
        assert len(tokenizer) == 3 + len(set("".join(texts).replace(" ", "▁")))


def test_special_ids_space_token_and_frequency_order():
    tokenizer = CharTokenizer.build(["abb a", "cb"])
    assert tokenizer.tokens == ["<blank>", "<unk>", "<sos/eos>", "b", "a", "c", "▁"]  # b=3, a=2, then ties by char
    assert (tokenizer.blank, tokenizer.unk, tokenizer.sos_eos) == (0, 1, 2)
    assert tokenizer.encode("ab c") == [4, 3, 6, 5]
    assert tokenizer.decode([2, 4, 3, 6, 5, 2, 0]) == "ab c"
    assert tokenizer.decode([2, 4, 0], strip_specials=False) == "<sos/eos>a<blank>"


def test_min_count_and_unknown_characters_are_counted():
    tokenizer = CharTokenizer.build(["aab", "a"], min_count=2)
    assert tokenizer.tokens[3:] == ["a"]
    assert tokenizer.encode("abzb") == [3, 1, 1, 1]
    assert tokenizer.unknown_counts == {"b": 2, "z": 1}


def test_save_load_and_list_round_trip(tmp_path):
    tokenizer = CharTokenizer.build(["你好 ok", "好"])
    path = tmp_path / "tokens.txt"
    tokenizer.save(str(path))
    assert path.read_text(encoding="utf-8").splitlines() == tokenizer.tokens
    assert CharTokenizer.load(str(path)).tokens == tokenizer.tokens
    assert CharTokenizer.from_list(list(tokenizer.tokens)).encode("好 ok") == tokenizer.encode("好 ok")


def test_bad_vocabulary_files_raise(tmp_path):
    with pytest.raises(ASRError, match="no such vocabulary"):
        CharTokenizer.load(str(tmp_path / "missing.txt"))
    (tmp_path / "bad.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ASRError, match="bad.txt: vocabulary must start with <blank>"):
        CharTokenizer.load(str(tmp_path / "bad.txt"))
    with pytest.raises(ASRError, match="more than once"):
        CharTokenizer.from_list(["<blank>", "<unk>", "<sos/eos>", "a", "a"])
