"""Bundle-LLM: multiple-choice bundle completion by an LLM with hybrid item tokens (README.md beside this file)."""

from genir.methods.bundlellm.baselines import (
    CoOccurrenceChoice,
    DiscriminativeBundleModel,
    PopularityChoice,
    RandomChoice,
)
from genir.methods.bundlellm.features import ItemFeatures, item_features, read_depends
from genir.methods.bundlellm.model import BundleLLM, BundleLLMConfig, FeatureFusion, Projector, parse_letter
from genir.methods.bundlellm.training import (
    ChoiceEvaluator,
    QuestionPool,
    default_trainer_config,
    evaluate_choices,
    train_stage,
)

__all__ = [
    "BundleLLM",
    "BundleLLMConfig",
    "ChoiceEvaluator",
    "CoOccurrenceChoice",
    "DiscriminativeBundleModel",
    "FeatureFusion",
    "ItemFeatures",
    "PopularityChoice",
    "Projector",
    "QuestionPool",
    "RandomChoice",
    "default_trainer_config",
    "evaluate_choices",
    "item_features",
    "parse_letter",
    "read_depends",
    "train_stage",
]
