"""Segmentation models by decoder name (``model.decoder``) on the encoder ``model.arch``.

``model.arch`` names the encoder, as it names the network in classification: any hierarchical timm model
(``resnet18``, ``mobilenetv2_100``, ``convnext_atto``...) or ``scratch_cnn`` / ``baseline_cnn`` for the CNN
decoders ``unet``, ``fpn`` and ``mobilenetv2_decoder``, and ``mit_b0`` .. ``mit_b5`` for ``segformer``. So the
orchestrator's pretrain stage (which trains ``model.arch`` as a classifier) and ``weights: file:<classification
checkpoint>`` hand their encoder over by parameter name.

``build_seg_model`` returns a :class:`~trainables.models.ModelBundle` whose ``head`` is the decoder's parameters
and whose ``stages`` are the encoder's, so every freezing strategy of ``trainables.freezing`` works unchanged
(``linear_probe`` trains the decoder on a frozen encoder).
"""
from __future__ import annotations

from typing import Callable, Optional

from trainables.catalog import DECODERS  # model.decoder: the names, pointing at the builders below
from trainables.config import ModelConfig
from trainables.models import ModelBundle, weights, weights_mode
from trainables.segmentation.models import segformer
from trainables.segmentation.models.decoders import DeconvDecoder, FPNDecoder, SegModel, UNetDecoder
from trainables.segmentation.models.encoders import build_encoder, check_encoder, load_encoder

SEG_MODELS = DECODERS


def _cnn(decoder_factory) -> Callable[[ModelConfig, int, str], ModelBundle]:
    def build(cfg: ModelConfig, num_classes: int, mode: str) -> ModelBundle:
        enc = build_encoder(cfg, "imagenet" if mode == "imagenet" else "none")
        model = SegModel(enc.module, decoder_factory(enc, num_classes, cfg), list(range(len(enc.channels))))
        head = [f"decoder.{n}" for n, _ in model.decoder.named_parameters()]
        stages = [[f"encoder.{n}" for n in stage] for stage in enc.stages]
        return ModelBundle(model, head, stages, enc.input_size, enc.mean, enc.std, cfg.arch)
    return build


build_unet = _cnn(lambda enc, k, cfg: UNetDecoder(enc.channels, k, cfg.decoder_width))
build_fpn = _cnn(lambda enc, k, cfg: FPNDecoder(enc.channels, enc.reductions, k, cfg.decoder_width))
build_deconv = _cnn(lambda enc, k, cfg: DeconvDecoder(enc.channels, enc.reductions, k))


def build_segformer(cfg: ModelConfig, num_classes: int, mode: str, overrides: Optional[dict] = None) -> ModelBundle:
    model = segformer.build_segformer_net(cfg.arch, num_classes, "imagenet" if mode == "imagenet" else "none",
                                          overrides)
    head, stages = segformer.segformer_parts(model)
    return ModelBundle(model, head, stages, segformer.INPUT_SIZE, segformer.IMAGENET_MEAN, segformer.IMAGENET_STD,
                       cfg.arch)


def check_seg_model(cfg: ModelConfig) -> None:
    """Raise ConfigError unless ``model.decoder`` is known and ``model.arch`` is an encoder it can use."""
    SEG_MODELS.get(cfg.decoder)
    if cfg.decoder == "segformer":
        segformer.check_variant(cfg.arch)
    else:
        check_encoder(cfg.arch)
    weights_mode(cfg)


def default_input_size(cfg: ModelConfig) -> int:
    """The encoder's pretrained input size (``data.image_size`` when unset), without building the model."""
    if cfg.decoder == "segformer":
        return segformer.INPUT_SIZE
    from trainables.models import scratch
    if cfg.arch in scratch.LOCAL_MODELS:
        return 32
    import timm
    pc = timm.models.get_pretrained_cfg(cfg.arch)
    return int(pc.input_size[-1]) if pc is not None else 224


def build_seg_model(cfg: ModelConfig, num_classes: int, **kwargs) -> ModelBundle:
    """Build decoder ``cfg.decoder`` on encoder ``cfg.arch`` for ``num_classes`` classes, with its weights.

    ``weights: file:<path>`` loads the encoder from a classification or segmentation checkpoint of this project
    (or a state dict), matching parameter names; the decoder always starts fresh.

    Example:
        >>> b = build_seg_model(ModelConfig(arch="resnet18", decoder="unet"), num_classes=4)
        >>> len(b.stages), b.head[0]
        (5, 'decoder.blocks.0.0.0.weight')
    """
    check_seg_model(cfg)
    mode = weights_mode(cfg)
    bundle = SEG_MODELS.get(cfg.decoder)(cfg, num_classes, mode, **kwargs)
    if mode == "file":
        path = cfg.weights[len("file:"):]
        model = bundle.model
        encoder = segformer.encoder_of(model) if isinstance(model, segformer.SegformerNet) else model.encoder
        load_encoder(encoder, weights.read_state_dict(path), path)
    return bundle


__all__ = ["SEG_MODELS", "build_seg_model", "check_seg_model", "default_input_size", "weights_mode"]
