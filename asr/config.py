"""Training configs: a YAML file of TrainConfig fields, plus KEY=VALUE overrides from the command line."""
import os
from typing import List

import yaml

from .errors import ASRError
from .train import TrainConfig


def load_train_config(path: str, overrides: List[str] = ()) -> TrainConfig:
    if not os.path.isfile(path):
        raise ASRError(f"{path}: no such config file")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ASRError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ASRError(f"{path}: expected a mapping of training options")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ASRError(f"override {item!r} is not KEY=VALUE")
        *parents, leaf = key.split(".")
        target = data
        for name in parents:
            target = target.setdefault(name, {})
        target[leaf] = yaml.safe_load(value)
    try:
        return TrainConfig.from_dict(data)
    except TypeError as e:
        raise ASRError(f"{path}: {e}") from None
