"""Ray Tune logger callbacks by name (a study's ``logging: [...]``), one registration each.

Importing this module does not import Ray: the study validator (``search_spaces.spec``) and ``tlsweep list``
read the names, and each factory imports Ray and the logger's package only when a study runs. A factory takes the
:class:`~search_spaces.Study` and returns its callback (``None``: nothing to add).

Example:
    >>> LOGGERS.names()
    ['csv', 'json', 'mlflow', 'tensorboard', 'wandb']
"""
from __future__ import annotations

from trainables.errors import ConfigError
from trainables.registry import Registry

LOGGERS: Registry = Registry("logging")
PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}  # the package a logger needs


def _missing(name: str) -> ConfigError:
    package = PACKAGES[name]
    return ConfigError(f"logging: {name} needs the {package} package (pip install {package}), "
                       f"or remove it from logging")


def _needs(package: str, name: str) -> None:
    try:
        __import__(package)
    except ImportError:
        raise _missing(name) from None


def check_packages(names) -> None:
    """Each logger's package is installed (found, not imported: this runs before Ray starts); else ConfigError."""
    import importlib.util
    for name in names:
        if name in PACKAGES and importlib.util.find_spec(PACKAGES[name]) is None:
            raise _missing(name)


@LOGGERS.register("json", description="Tune's result.json per trial (always written: Tune's result tables need it)")
def _json(study):
    return None  # callbacks() always adds it


@LOGGERS.register("tensorboard", description="TensorBoard event files per trial (tensorboardX)")
def _tensorboard(study):
    _needs(PACKAGES["tensorboard"], "tensorboard")
    from ray.tune.logger import TBXLoggerCallback
    return TBXLoggerCallback()


@LOGGERS.register("csv", description="progress.csv per trial")
def _csv(study):
    from ray.tune.logger import CSVLoggerCallback
    return CSVLoggerCallback()


@LOGGERS.register("mlflow", description="an MLflow run per trial, in the experiment named after the study")
def _mlflow(study):
    _needs(PACKAGES["mlflow"], "mlflow")
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    return MLflowLoggerCallback(experiment_name=study.name)


@LOGGERS.register("wandb", description="a Weights & Biases run per trial, in the project named after the study")
def _wandb(study):
    _needs(PACKAGES["wandb"], "wandb")
    from ray.air.integrations.wandb import WandbLoggerCallback
    return WandbLoggerCallback(project=study.name)


def callbacks(study) -> list:
    """The Tune callbacks of ``study.logging`` (JSON first, always); a missing package is a ConfigError."""
    from ray.tune.logger import JsonLoggerCallback
    out = [JsonLoggerCallback()]  # Tune's own result files (Result.metrics_dataframe) need it
    for name in study.logging:
        callback = LOGGERS.get(name)(study)
        if callback is not None:
            out.append(callback)
    return out
