import csv

import pytest

from asr.errors import ASRError
from asr.text import CharTokenizer, chinese_numerals, mixed_tokens, normalize_text


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
    assert normalize_text("我用 iPhone X 打电话。《三体》、“好”？", "zh") == "我用iphone x打电话三体好"
    aishell = clips["wenet_aishell-BAC009S0724W0121"]["text"]
    assert normalize_text(" ".join(aishell) + "。", "zh") == aishell == "广州市房地产中介协会分析"


def test_chinese_keeps_the_spaces_between_embedded_english_words():
    assert normalize_text("我 爱 New  York ， 你 呢 ？", "zh") == "我爱new york你呢"
    assert normalize_text("Open the 门 please", "zh") == "open the门please"
    assert mixed_tokens("我爱new york你呢") == ["我", "爱", "new", "york", "你", "呢"]
    assert mixed_tokens("") == []


@pytest.mark.parametrize("number, spoken", [
    ("0", "零"), ("7", "七"), ("10", "十"), ("15", "十五"), ("20", "二十"), ("101", "一百零一"), ("110", "一百一十"),
    ("1001", "一千零一"), ("1010", "一千零一十"), ("10020", "一万零二十"), ("20300", "二万零三百"), ("110000", "十一万"),
    ("1000100", "一百万零一百"), ("100010000", "一亿零一万"), ("1234567890", "十二亿三千四百五十六万七千八百九十"),
    ("1,000,000", "一百万"), ("3.14", "三点一四"), ("50%", "百分之五十"), ("1995年", "一九九五年"),
    ("010", "零一零"), ("95年", "九十五年")])
def test_chinese_numerals_are_spelled_as_read(number, spoken):
    assert chinese_numerals(number) == spoken


def test_numerals_option_applies_to_chinese_only():
    assert normalize_text("我有 3 个苹果，占50%。", "zh", numerals="chinese") == "我有三个苹果占百分之五十"
    assert normalize_text("我有 3 个苹果", "zh") == "我有3个苹果"  # "keep" is the default
    assert normalize_text("3 apples", "en", numerals="chinese") == "3 apples"
    with pytest.raises(ASRError, match="numerals must be one of keep, chinese"):
        normalize_text("3", "zh", numerals="roman")


def test_coverage_reports_what_a_frequency_cut_off_leaves_out():
    texts = ["的的的是是了", "的是一"]
    tokenizer = CharTokenizer.build(texts, min_count=2)
    assert tokenizer.tokens[3:] == ["的", "是"]
    assert tokenizer.coverage(texts) == ({"了": 1, "一": 1}, 9)


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
