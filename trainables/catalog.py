"""Every name a trial config can hold that is not a model or a freezing strategy, in one place.

Each registry is written here once, with a one-line description per name and the factory it stands for as
``"module:attr"``, imported only when a trial asks for it (``Registry.add``): so validation
(``trainables.config.validate``) and ``tlsweep list`` read the names without importing torch. The modules that
use a registry import it from here (``trainables.data.DATASETS`` is ``catalog.DATASETS``). Adding a data set,
augmentation, optimizer, schedule, loss or decoder: write its factory, then one ``add`` line below; a plug-in can
also register one at run time (``@DATASETS.register("mine", description=...)``).

Models (``model.arch``: timm, ``tv:<name>``, the scratch CNNs) and freezing strategies (``model.strategy``) have
registries of their own (``trainables.models.list_models``, ``trainables.freezing.STRATEGIES``), checked when a
trial starts and before ``tlsweep run`` starts Ray.

Example:
    >>> DATASETS.names("cifar*"), SEG_DATASETS.task
    (['cifar10', 'cifar100'], 'segmentation')
"""
from __future__ import annotations

from trainables.registry import Registry

_D, _SD = "trainables.data", "trainables.segmentation.data"

# data.name, task: classification (loaders: cfg -> RawData)
DATASETS: Registry = Registry("data.name", task="classification")
DATASETS.add("digits", f"{_D}.digits:load_digits", "scikit-learn's bundled 8x8 digits, 10 classes (offline)")
DATASETS.add("shapes", f"{_D}.shapes:load_shapes_classification",
             "synthetic one-shape images, data.num_shapes classes (offline; pretrains segmentation encoders)")
DATASETS.add("cifar10", f"{_D}.torchvision_sets:load_cifar10", "CIFAR-10 via torchvision (data.root, data.download)")
DATASETS.add("cifar100", f"{_D}.torchvision_sets:load_cifar100", "CIFAR-100 via torchvision (data.root, data.download)")
DATASETS.add("mnist", f"{_D}.torchvision_sets:load_mnist", "MNIST via torchvision (data.root, data.download)")
DATASETS.add("fashion_mnist", f"{_D}.torchvision_sets:load_fashion_mnist",
             "Fashion-MNIST via torchvision (data.root, data.download)")
DATASETS.add("imagefolder", f"{_D}.folders:load_imagefolder",
             "data.root/<class>/<image>, optionally under train/ val/ test/")
DATASETS.add("tiny_imagenet", f"{_D}.folders:load_tiny_imagenet", "Tiny-ImageNet's folder layout under data.root")

# data.name, task: segmentation (loaders: cfg, image_size -> SegData)
SEG_DATASETS: Registry = Registry("data.name", task="segmentation")
SEG_DATASETS.add("segfolder", f"{_SD}.segfolder:load_segfolder",
                 "images and masks in parallel folders under data.root (train/ + train_masks/, ...)")
SEG_DATASETS.add("ade20k", f"{_SD}.ade20k:load_ade20k", "ADE20K SceneParsing (ADEChallengeData2016), 150 classes")
SEG_DATASETS.add("shapes", f"{_SD}.shapes:load_shapes",
                 "synthetic scenes of circles, squares, triangles with exact masks (offline)")

# data.augment (factories: image size -> transform or None)
AUGMENTATIONS: Registry = Registry("data.augment", task="classification")
AUGMENTATIONS.add("none", "trainables.transforms:no_augment", "no augmentation")
AUGMENTATIONS.add("standard", "trainables.transforms:standard",
                  "random resized crop (60-100%), flip, rotation, colour jitter (on CUDA: batched on the GPU)")
AUGMENTATIONS.add("strong", "trainables.transforms:strong",
                  "random resized crop (30-100%), flip, TrivialAugmentWide, stronger colour jitter")

SEG_AUGMENTATIONS: Registry = Registry("data.augment", task="segmentation")
SEG_AUGMENTATIONS.add("none", "trainables.segmentation.transforms:no_augment", "no augmentation")
SEG_AUGMENTATIONS.add("standard", "trainables.segmentation.transforms:standard",
                      "the same random resized crop (50-100%) and flip for image and mask")
SEG_AUGMENTATIONS.add("strong", "trainables.segmentation.transforms:strong",
                      "crop of 25-100% and flip, plus brightness / contrast jitter of the image")

# training.optimizer (factories: param groups, TrainingConfig -> torch optimizer)
OPTIMIZERS: Registry = Registry("training.optimizer")
OPTIMIZERS.add("adamw", "trainables.optim:adamw", "AdamW (training.weight_decay decoupled)")
OPTIMIZERS.add("adam", "trainables.optim:adam", "Adam (training.weight_decay as L2)")
OPTIMIZERS.add("sgd", "trainables.optim:sgd", "SGD with Nesterov momentum (training.momentum; 0: plain SGD)")

# training.scheduler, the learning-rate schedule (factories: optimizer, TrainingConfig, epochs, steps/epoch -> Step)
LR_SCHEDULES: Registry = Registry("training.scheduler")
LR_SCHEDULES.add("cosine", "trainables.optim:cosine", "cosine decay per step, after training.warmup_epochs of warm-up")
LR_SCHEDULES.add("step", "trainables.optim:step", "x training.gamma every training.step_size epochs")
LR_SCHEDULES.add("plateau", "trainables.optim:plateau", "x training.gamma when the objective stalls for 2 epochs")
LR_SCHEDULES.add("none", "trainables.optim:constant", "constant learning rate")

# model.activation of the scratch CNNs (torch.nn module classes)
ACTIVATIONS: Registry = Registry("model.activation")
for _name, _cls in (("relu", "ReLU"), ("gelu", "GELU"), ("silu", "SiLU"), ("mish", "Mish")):
    ACTIVATIONS.add(_name, f"torch.nn:{_cls}", f"torch.nn.{_cls}")

# training.loss, task: segmentation (factories: ignore_index, label_smoothing -> loss)
LOSSES: Registry = Registry("training.loss", task="segmentation")
_L = "trainables.segmentation.losses"
LOSSES.add("ce", f"{_L}:ce", "cross-entropy (training.label_smoothing applies)")
LOSSES.add("bce", f"{_L}:bce", "binary cross-entropy of the foreground logit (two-class tasks)")
LOSSES.add("dice", f"{_L}:dice", "soft Dice (binary: the foreground; else the mean over classes present)")
LOSSES.add("bce_dice", f"{_L}:bce_dice", "bce + dice (two-class tasks)")
LOSSES.add("ce_dice", f"{_L}:ce_dice", "ce + dice")

# model.decoder, task: segmentation (factories: ModelConfig, num_classes, weights mode -> ModelBundle)
DECODERS: Registry = Registry("model.decoder", task="segmentation")
_M = "trainables.segmentation.models"
DECODERS.add("unet", f"{_M}:build_unet", "U-Net decoder on the encoder's skips (model.decoder_width channels)")
DECODERS.add("fpn", f"{_M}:build_fpn", "feature pyramid network decoder (model.decoder_width channels)")
DECODERS.add("mobilenetv2_decoder", f"{_M}:build_deconv",
             "five conv + transposed-conv blocks on the deepest (stride 32) feature")
DECODERS.add("segformer", f"{_M}:build_segformer", "SegFormer's all-MLP head on a MiT encoder (model.arch: mit_b0..b5)")

# The registries a trial's config is checked against (validate): the task's own, plus those of every task.
TRIAL_NAMES = (DATASETS, SEG_DATASETS, AUGMENTATIONS, SEG_AUGMENTATIONS, OPTIMIZERS, LR_SCHEDULES, ACTIVATIONS,
               LOSSES, DECODERS)


def for_task(task: str) -> list[Registry]:
    """The registries whose names a trial of ``task`` reads.

    Example:
        >>> [r.key for r in for_task("classification")]
        ['data.name', 'data.augment', 'training.optimizer', 'training.scheduler', 'model.activation']
    """
    return [r for r in TRIAL_NAMES if r.task in (None, task)]
