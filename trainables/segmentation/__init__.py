"""Semantic segmentation (``task: segmentation``): data sets, joint transforms, losses, metrics, models and one
training loop, with the same ``train(config, report, checkpoints)`` contract as classification.

Registries (their names are in :mod:`trainables.catalog`; ``tlsweep list datasets | decoders | losses |
augmentations``): ``SEG_DATASETS`` (``data.name``), ``SEG_MODELS`` (``model.decoder``; ``model.arch`` is the
encoder), ``LOSSES`` (``training.loss``) and ``SEG_AUGMENTATIONS`` (``data.augment``).
"""
from trainables.segmentation.data import SEG_DATASETS, load_seg_data
from trainables.segmentation.losses import LOSSES, build_loss
from trainables.segmentation.models import SEG_MODELS, build_seg_model
from trainables.segmentation.trainer import SegTrainer, preflight, train
from trainables.segmentation.transforms import SEG_AUGMENTATIONS

__all__ = ["LOSSES", "SEG_AUGMENTATIONS", "SEG_DATASETS", "SEG_MODELS", "SegTrainer", "build_loss",
           "build_seg_model", "load_seg_data", "preflight", "train"]
