from lightning_modules.models.base import TaskModel, TaskOutput
from lightning_modules.models.encoder import EncoderClassifier, TokenIdsVocabulary, Vocabulary
from lightning_modules.models.image_classifier import ImageClassifier
from lightning_modules.models.pair_classifier import GlueClassifier
from lightning_modules.models.resnet import ResNet18
from lightning_modules.models.span_qa import SpanQA
from lightning_modules.models.synthetic import SyntheticLandscape
from lightning_modules.models.token_classifier import TokenClassifier

__all__ = [
    "EncoderClassifier",
    "GlueClassifier",
    "ImageClassifier",
    "ResNet18",
    "SpanQA",
    "SyntheticLandscape",
    "TaskModel",
    "TaskOutput",
    "TokenClassifier",
    "TokenIdsVocabulary",
    "Vocabulary",
]
