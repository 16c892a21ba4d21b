"""The shipped segmentation studies name only things the segmentation trainable knows."""
import copy
import itertools

import pytest

from search_spaces import list_studies, load_study
from search_spaces.domains import thaw
from trainables.config import set_dotted, trial_config
from trainables.segmentation import preflight

STUDIES = ["shapes_quickstart", "ade20k_segformer", "binary_masks_mobilenet"]


def test_the_studies_are_shipped():
    assert set(STUDIES) <= set(list_studies())


@pytest.mark.parametrize("name", STUDIES)
def test_every_configuration_passes_preflight(name):
    study = load_study(name)
    assert study.task == "segmentation" and study.search.metric == "val_miou"
    choices = [(d.path, d.candidates()) for d in study.domains]
    for values in itertools.product(*[c for _, c in choices]):
        tree = {**copy.deepcopy(study.trial), "task": study.task}
        for (path, _), value in zip(choices, values):
            set_dotted(tree, path, thaw(value))
        preflight(trial_config(tree))
