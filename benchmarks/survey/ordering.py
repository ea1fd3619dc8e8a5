"""The order models are surveyed in: one timm family after another, torchvision smallest first, then transformers."""

from __future__ import annotations

import itertools
import re

import torchvision

from benchmarks.hf_models import HF_MODELS
from benchmarks.models import SURVEY_TIMM


def survey_models() -> list[str]:
    """The timm architectures of the survey ('timm:NAME'), one of each family in turn, then every torchvision
    classification model, smallest first, then the transformers models: a survey cut short has seen the most kinds
    of models that use BatchNorm."""
    families: dict[str, list[str]] = {}
    for name in SURVEY_TIMM:
        families.setdefault(re.split(r"[\d_]", name)[0], []).append(f"timm:{name}")
    in_turn = [name for round_ in itertools.zip_longest(*families.values()) for name in round_ if name]
    torchvision_models = sorted(torchvision.models.list_models(module=torchvision.models),
                                key=lambda n: torchvision.models.get_model_weights(n).DEFAULT.meta["num_params"])
    return in_turn + torchvision_models + [f"hf:{name}" for name in HF_MODELS]
