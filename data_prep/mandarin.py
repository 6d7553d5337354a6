"""Mandarin sentences for machines with no Mandarin corpus: each sentence's characters become
tone-numbered pinyin (pypinyin, with its tone sandhi: 你好 ni2 hao3, 一个 yi2 ge4), which is then
either read by espeak-ng (`-v cmn-latn-pinyin`, its voice variants at random rates and pitches) or
said by a real person: Debian's gcin-voice holds two recorded voices (about 1,200 toned syllables
each, 44.1 kHz Ogg), and a sentence is their recordings of its syllables, trimmed, levelled and
joined with short gaps inside words and longer ones between them, over a faint noise floor. The
transcript is the sentence, exactly what is said. Nothing is read or downloaded (no --corpus-dir):
`apt-get install espeak-ng gcin-voice` and `pip install pypinyin`.

Sentences come from --sentences FILE (one per line, Chinese characters; Arabic numbers are spelled
as read: 3 -> 三) or from a built-in grammar over a few hundred common words (times, places,
shopping, numbers, weather, household commands). No sentence is in two splits. espeak-ng's test
split uses voice variants that train and dev never use; gcin-voice's two people speak in every split
(there are only two), so its test sentences are new but its voices are not: ../shared/data/clips'
Mandarin recordings are the unseen-speaker test. A sentence with a syllable that a gcin voice never
recorded is read by the other gcin voice, or by espeak-ng. The manifest's speaker is the voice
("gcin:3", "espeak-ng:cmn-latn-pinyin+f2"); OUT/<split>.sources.jsonl holds each utterance's pinyin
and either its synthesiser command or the syllable recordings with where each starts. Audio is
16 kHz mono WAV under OUT/audio/<split>/. The same --seed gives the same files, byte for byte."""
import functools
import os
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from asr.audio import SAMPLE_RATE, load_audio, resample
from asr.segments import Segment
from asr.text import normalize_text

from .common import CorpusError, Prep, read_lines
from .fsdd_connected import trim
from .synth import add_corpus_args, share, split_counts, synthesiser_audio, write_at_level

NEEDS_CORPUS = False
GCIN_DIR = "/usr/share/gcin-voice/ogg"
GCIN_VOICES = ("3", "5")  # the package's two speakers: */3.ogg (Edward Der-Hua Liu), */5.ogg (ChionMeilin, Chu Lo)
ESPEAK_VOICE = "cmn-latn-pinyin"
ESPEAK_VARIANTS = {"train": "m1 m2 m3 m4 m5 f1 f2 f3", "test": "m6 m7 f4 f5"}
VARIANT_POOL = {"train": "train", "dev": "train", "test": "test"}
# gcin-voice names a recording by its bopomofo syllable and tone: no digit for the first, 2-4, 1 for
# the neutral tone; pypinyin marks tones 2-4 and the neutral one with these signs
GCIN_TONES = {"ˊ": "2", "ˇ": "3", "ˋ": "4", "˙": "1"}


@dataclass(frozen=True)
class Style:
    gcin_share: float = 0.6  # of utterances said by the recorded voices; espeak-ng reads the rest
    rate: Tuple[float, float] = (0.85, 1.15)  # espeak-ng's speaking rate factor; gcin: a resampling factor
    pitch: Tuple[float, float] = (0.8, 1.25)  # espeak-ng only
    word_gap: Tuple[float, float] = (0.06, 0.22)  # seconds of pause between words (gcin)
    syllable_gap: Tuple[float, float] = (0.0, 0.04)  # inside a word
    edge: Tuple[float, float] = (0.1, 0.3)  # silence before the first syllable and after the last
    level_db: Tuple[float, float] = (-30.0, -18.0)  # RMS of the utterance, dBFS
    noise_db: float = -60.0  # the noise floor's RMS, dBFS
    top_db: float = 35.0  # trimming keeps the 10 ms frames within this of a recording's loudest


@dataclass(frozen=True)
class Take:
    """One sentence as one voice says it."""
    uid: str
    split: str
    text: str
    words: Tuple[str, ...]  # the sentence's words, which set where the longer gaps go
    voice: str  # "gcin:3", "gcin:5" or "espeak-ng:cmn-latn-pinyin+m1"
    rate: float
    pitch: float
    level_db: float

    def command(self) -> List[str]:
        return ["espeak-ng", "-v", self.voice.split(":", 1)[1], "-s", str(round(150 * self.rate)),
                "-p", str(round(50 * self.pitch)), "--stdout", " ".join(pinyin(self.words))]


def pinyin(words) -> List[str]:
    """Tone-numbered pinyin of the words' characters (5 = neutral), with tone sandhi."""
    from pypinyin import Style as PinyinStyle, lazy_pinyin

    return lazy_pinyin("".join(words), style=PinyinStyle.TONE3, neutral_tone_with_five=True, tone_sandhi=True)


def bopomofo(words) -> List[str]:
    from pypinyin import Style as PinyinStyle, lazy_pinyin

    return lazy_pinyin("".join(words), style=PinyinStyle.BOPOMOFO, tone_sandhi=True)


def gcin_names(syllable: str) -> List[str]:
    """gcin-voice folder names for a bopomofo syllable, best first: its own tone, then (for the
    neutral tone, which is rarely recorded) the same syllable in the other tones."""
    base, tone = (syllable[:-1], GCIN_TONES[syllable[-1]]) if syllable[-1] in GCIN_TONES else (syllable, "")
    return [base + tone] + ([base, base + "2", base + "3", base + "4"] if tone == "1" else [])


def gcin_recordings(words, voice: str, root: str = GCIN_DIR) -> Optional[List[str]]:
    """The recording of each syllable in the voice, or None if it lacks one."""
    paths = []
    for syllable in bopomofo(words):
        found = [p for p in (os.path.join(root, name, f"{voice}.ogg") for name in gcin_names(syllable)) if os.path.isfile(p)]
        if not found:
            return None
        paths.append(found[0])
    return paths


@functools.lru_cache(maxsize=None)
def syllable_audio(path: str, top_db: float) -> np.ndarray:
    """A recording at 16 kHz, trimmed to its syllable and scaled to RMS 1."""
    audio = load_audio(path, SAMPLE_RATE)
    start, end = trim(audio, top_db, SAMPLE_RATE // 100)
    audio = audio[start:end]
    return audio / max(float(np.sqrt(np.mean(np.square(audio)))), 1e-6)


def say_with_gcin(take: Take, style: Style, root: str = GCIN_DIR) -> Tuple[np.ndarray, List[dict]]:
    """The take's syllables, recorded by its voice, joined; and where each starts (samples)."""
    rng = np.random.default_rng([zlib.crc32(take.uid.encode()), 1])
    paths = gcin_recordings(take.words, take.voice.split(":", 1)[1], root)
    word_ends = np.cumsum([len(w) for w in take.words])
    pieces, sources = [np.zeros(int(rng.uniform(*style.edge) * SAMPLE_RATE), np.float32)], []
    at = len(pieces[0])
    for index, path in enumerate(paths):
        audio = resample(syllable_audio(path, style.top_db), SAMPLE_RATE, round(SAMPLE_RATE / take.rate))
        sources.append(dict(recording=os.path.relpath(path, root), start=at))
        pieces.append(audio.astype(np.float32))
        gap = style.edge if index == len(paths) - 1 else style.word_gap if index + 1 in word_ends else style.syllable_gap
        pieces.append(np.zeros(int(rng.uniform(*gap) * SAMPLE_RATE), np.float32))
        at += len(audio) + len(pieces[-1])
    audio = np.concatenate(pieces)
    return audio + rng.normal(0, 10 ** (style.noise_db / 20), len(audio)).astype(np.float32), sources


def synthesise(take: Take, style: Style, path: str) -> Tuple[float, dict]:
    """Says the take into a 16 kHz WAV at its level (lower where that would clip); returns its
    duration and its provenance."""
    if take.voice.startswith("gcin:"):
        audio, syllables = say_with_gcin(take, style)
        source = dict(syllables=syllables)
    else:
        audio, source = synthesiser_audio(take.command()), dict(command=take.command())
    gain = write_at_level(path, audio, take.level_db, f"{take.voice} for {take.text!r}")
    return len(audio) / SAMPLE_RATE, dict(source, pinyin=" ".join(pinyin(take.words)), gain=gain)


def plan_split(split: str, count: int, sentences: List[Tuple[str, ...]], seed: int, style: Style) -> List[Take]:
    """The split's takes, each sentence in turn with a voice, rate, pitch and level drawn from a
    generator seeded by (seed, split)."""
    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    variants = ESPEAK_VARIANTS[VARIANT_POOL[split]].split()
    plan = []
    for index in range(count):
        words = sentences[index % len(sentences)]
        voices = [f"gcin:{v}" for v in rng.permutation(GCIN_VOICES) if gcin_recordings(words, v) is not None]
        espeak = f"espeak-ng:{ESPEAK_VOICE}+{variants[rng.integers(len(variants))]}"
        voice = voices[0] if voices and rng.random() < style.gcin_share else espeak
        plan.append(Take(f"{split}_{index:05d}", split, "".join(words), words, voice, float(rng.uniform(*style.rate)),
                         float(rng.uniform(*style.pitch)), float(rng.uniform(*style.level_db))))
    return plan


def _counts(n: int, measure: bool) -> List[str]:
    """Chinese cardinals 1..n as said before a measure word (两, not 二) or alone."""
    from asr.text import chinese_numerals

    return [("两" if measure and k == 2 else chinese_numerals(str(k))) for k in range(1, n + 1)]


# UPPERCASE symbols expand to one of their alternatives; spaces separate words (the longer gaps).
GRAMMAR: Dict[str, List[str]] = {
    "S": ["NAME WHEN 去 PLACE", "NAME WHEN 在 PLACE VP", "我 想 买 COUNT 个 THING", "WHEN 的 天气 很 WEATHER",
          "请 把 THING 放 在 PLACE", "NAME 的 RELATIVE 是 JOB", "现在 是 HOUR 点 MINUTE 分", "这个 THING 多少 钱",
          "NAME 和 NAME WHEN 一起 去 PLACE", "我 家 有 COUNT 口 人", "NAME 喜欢 HOBBY", "请 OPEN DEVICE",
          "请 帮 我 CLOSE DEVICE", "DEVICE 已经 OPEN 了", "NAME 坐 VEHICLE 去 PLACE", "WHEN 我 要 去 PLACE VP",
          "NAME 今年 AGE 岁 了", "这 本 书 NUMBER 块 钱", "NAME 每天 早上 HOUR 点 起床", "PLACE 离 这里 不 远",
          "你 知道 PLACE 在 哪里 吗", "NAME 正在 PLACE VP", "我们 WHEN 在 PLACE 见面 吧", "NAME 买 了 COUNT 本 书",
          "把 DEVICE 的 声音 调 大 一点", "今天 是 MONTH 月 DAY 号 WEEKDAY", "NAME 觉得 这个 THING 很 QUALITY",
          "请 问 PLACE 怎么 走", "NAME 不 想 HOBBY", "我 的 电话 号码 是 DIGITS"],
    "NAME": "小明 小红 张伟 王芳 李娜 刘洋 陈静 杨帆 赵磊 黄丽 老师 妈妈 爸爸 哥哥 姐姐 弟弟 妹妹 他们 我们 你们".split(),
    "WHEN": "今天 明天 昨天 后天 早上 晚上 下午 上午 周末 中午 现在 刚才 下个月 去年 明年".split()
            + ["星期" + d for d in "一二三四五六天"],
    "WEEKDAY": ["星期" + d for d in "一二三四五六天"],
    "PLACE": "北京 上海 广州 深圳 杭州 南京 学校 医院 公园 超市 图书馆 银行 饭店 机场 火车站 办公室 商店 食堂 家里 教室 "
             "电影院 体育馆 博物馆 动物园 邮局".split(),
    "VP": "吃饭 学习 工作 看书 上课 开会 买菜 休息 跑步 唱歌 跳舞 打球 游泳 看电影 写作业 喝咖啡 等 朋友".split(),
    "THING": "苹果 香蕉 鸡蛋 杯子 包子 面包 西瓜 橘子 手机 电脑 钥匙 衣服 帽子 书包 雨伞 椅子 桌子 盘子 本子 铅笔".split(),
    "WEATHER": "好 冷 热 暖和 凉快 干燥 舒服".split() + ["不错"],
    "QUALITY": "好 贵 便宜 漂亮 有意思 重要 方便 简单 难".split(),
    "RELATIVE": "爸爸 妈妈 哥哥 姐姐 弟弟 妹妹 爷爷 奶奶 朋友 同学".split(),
    "JOB": "老师 医生 司机 学生 工人 警察 厨师 农民 护士 经理".split(),
    "HOBBY": "看书 唱歌 跳舞 打球 游泳 画画 旅游 做饭 听音乐 踢足球 下棋 爬山".split(),
    "OPEN": ["打开"], "CLOSE": ["关上", "关掉"],
    "DEVICE": "空调 电视 灯 窗户 门 音乐 收音机 电脑 风扇 热水器".split(),
    "VEHICLE": "飞机 火车 汽车 地铁 公共汽车 出租车 自行车".split(),
    "COUNT": _counts(10, measure=True),
    "NUMBER": _counts(99, measure=False),
    "AGE": _counts(80, measure=False),
    "HOUR": _counts(12, measure=True),
    "MINUTE": _counts(59, measure=False),
    "MONTH": _counts(12, measure=False),
    "DAY": _counts(31, measure=False),
    "DIGITS": ["DIGIT DIGIT DIGIT DIGIT DIGIT DIGIT DIGIT DIGIT"],
    "DIGIT": list("零一二三四五六七八九"),
}


def expand(symbol: str, rng: np.random.Generator) -> List[str]:
    alternatives = GRAMMAR[symbol]
    chosen = alternatives[rng.integers(len(alternatives))]
    return [word for token in chosen.split() for word in (expand(token, rng) if token in GRAMMAR else [token])]


def generated_sentences(count: int, rng: np.random.Generator) -> List[Tuple[str, ...]]:
    """`count` distinct sentences of the grammar, as their words."""
    sentences: Dict[Tuple[str, ...], None] = {}
    for _ in range(50 * count):
        if len(sentences) == count:
            break
        sentences[tuple(expand("S", rng))] = None
    if len(sentences) < count:
        raise CorpusError(f"the built-in grammar gave only {len(sentences):,} distinct sentences of the {count:,} "
                          "asked for: pass --sentences FILE")
    return list(sentences)


def file_sentences(prep: Prep, path: str, rng: np.random.Generator) -> List[Tuple[str, ...]]:
    """The file's distinct sentences, normalised (numbers spelled as read), as words where the file
    separates them with spaces, shuffled so that every split draws from all of it."""
    sentences: Dict[Tuple[str, ...], None] = {}
    for line in filter(str.strip, read_lines(path)):
        words = tuple(w for w in (normalize_text(word, "zh", numerals="chinese") for word in line.split()) if w)
        if not words or not all(pinyin([w])[0] != w for w in "".join(words)):
            prep.skip("sentence with characters that have no pinyin (not Chinese)", line)
        elif words in sentences:
            prep.skip("repeated sentence", line)
        else:
            sentences[words] = None
    ordered = list(sentences)
    return [ordered[i] for i in rng.permutation(len(ordered))]


def check_installed() -> None:
    missing = [name for name, ok in (("espeak-ng", shutil.which("espeak-ng")), ("gcin-voice", os.path.isdir(GCIN_DIR)))
               if not ok]
    if missing:
        raise CorpusError(f"mandarin needs {' and '.join(missing)}, not installed: apt-get install {' '.join(missing)}")
    try:
        import pypinyin  # noqa: F401
    except ImportError:
        raise CorpusError("mandarin needs pypinyin: pip install pypinyin") from None


def add_args(parser) -> None:
    add_corpus_args(parser, 3000, 200, 300, "one Chinese sentence per line")


def prepare(prep: Prep) -> None:
    options, style = prep.options, Style()
    counts = split_counts(options)
    check_installed()
    rng = np.random.default_rng([options.seed, zlib.crc32(b"sentences")])
    if options.sentences:
        sentences, source = file_sentences(prep, options.sentences, rng), options.sentences
    else:
        sentences, source = generated_sentences(sum(counts.values()), rng), "the built-in grammar"
    shares = share(sentences, counts, source)
    plan = [take for split, count in counts.items() if count
            for take in plan_split(split, count, shares[split], options.seed, style)]
    paths = [os.path.join(prep.out_dir, "audio", take.split, f"{take.uid}.wav") for take in plan]
    with ThreadPoolExecutor(options.jobs) as pool:
        results = list(pool.map(lambda take, path: synthesise(take, style, path), plan, paths))
    for take, path, (duration, source) in zip(plan, paths, results):
        prep.add(take.split, Segment(take.uid, path, duration, take.text, take.voice, "zh"), source)
