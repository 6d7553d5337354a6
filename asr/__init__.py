"""A small, fast attention-based speech recogniser."""
__version__ = "0.1.0"


def load_model(path: str, device: str = "cpu"):
    """A Recognizer for a model file: `asr.load_model("exp/fsdd/model.pt").transcribe(["a.wav"])`."""
    from .transcribe import Recognizer

    return Recognizer.load(path, device)
