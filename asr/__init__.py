"""A small, fast attention-based speech recogniser."""
__version__ = "0.1.0"


def load_model(path: str, device: str = "cpu", lm: "str | None" = None):
    """A Recognizer for a model file: `asr.load_model("exp/fsdd/model.pt").transcribe(["a.wav"])`;
    `lm`: a language model file (asr train-lm) to fuse into beam search."""
    from .transcribe import Recognizer

    return Recognizer.load(path, device, lm)
