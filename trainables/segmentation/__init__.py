"""Semantic segmentation (``task: segmentation``): data sets, joint transforms, losses, metrics, models and one
training loop, with the same ``train(config, report, checkpoints)`` contract as classification.

Registries: ``SEG_DATASETS`` (``data.name``: segfolder, ade20k, shapes), ``SEG_MODELS`` (``model.decoder``: unet,
fpn, mobilenetv2_decoder, segformer; ``model.arch`` is the encoder), ``LOSSES`` (``training.loss``: ce, bce, dice,
bce_dice, ce_dice) and ``SEG_AUGMENTATIONS`` (``data.augment``: none, standard, strong).
"""
from trainables.segmentation.data import SEG_DATASETS, load_seg_data
from trainables.segmentation.losses import LOSSES, build_loss
from trainables.segmentation.models import SEG_MODELS, build_seg_model
from trainables.segmentation.trainer import SegTrainer, preflight, train
from trainables.segmentation.transforms import SEG_AUGMENTATIONS

__all__ = ["LOSSES", "SEG_AUGMENTATIONS", "SEG_DATASETS", "SEG_MODELS", "SegTrainer", "build_loss",
           "build_seg_model", "load_seg_data", "preflight", "train"]
