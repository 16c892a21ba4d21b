"""``search.preselect``: validated with the rest of the study, one line per mistake."""
import pytest

from search_spaces import study_from_dict
from search_spaces.preselect import PreselectSpec
from trainables.errors import ConfigError

PRETRAIN = {"pretrain": {"data": {"name": "digits", "classes": [0, 1, 2, 3, 4]}, "epochs": 1}}


def study(preselect, model=None, **search):
    model = model if model is not None else {"arch": {"grid": ["resnet18", "mobilenetv3_small_100", "scratch_cnn",
                                                               "test_resnet"]}, "weights": PRETRAIN}
    return {"name": "p", "model": model, "search": {"preselect": preselect, "scheduler": "none", **search}}


def test_a_valid_preselect_round_trips():
    s = study_from_dict(study({"score": "logme", "top_k": 2}))
    assert s.search.preselect == PreselectSpec("logme", 2)
    assert study_from_dict(s.to_dict()) == s
    assert study_from_dict(study({"top_k": 0.5})).search.preselect == PreselectSpec("logme", 0.5)
    assert study_from_dict(study(None)).search.preselect is None


@pytest.mark.parametrize("preselect, line", [
    ("logme", r"^search\.preselect: expected a mapping like \{score: logme, top_k: 3\}"),
    ({"score": "logm"}, r"^search\.preselect\.score: unknown name 'logm' \(did you mean: logme"),
    ({"topk": 2}, r"^search\.preselect\.topk: unknown key \(did you mean: top_k\?\)$"),
    ({"top_k": 0}, r"^search\.preselect\.top_k: expected a number of architectures \(an int >= 1\) or a fraction "
                   r"in \(0, 1\), got 0$"),
    ({"top_k": 1.5}, r"^search\.preselect\.top_k: .* got 1\.5$"),
    ({"top_k": "2"}, r"^search\.preselect\.top_k: .* got '2'$"),
    ({"top_k": True}, r"^search\.preselect\.top_k: .* got True$"),
    ({"top_k": 3}, r"^search\.preselect\.top_k: 3 keeps all 3 architectures with pretrained weights \(resnet18, "
                   r"mobilenetv3_small_100, test_resnet\); nothing would be left out$"),
])
def test_mistakes_are_one_line_naming_the_key(preselect, line):
    with pytest.raises(ConfigError, match=line) as e:
        study_from_dict(study(preselect))
    assert "\n" not in str(e.value)


def test_preselect_needs_architectures_with_weights_to_choose_from():
    with pytest.raises(ConfigError, match=r"^search\.preselect: needs model\.arch as a grid or choice"):
        study_from_dict(study({"top_k": 1}, model={"arch": "resnet18", "weights": PRETRAIN}))
    with pytest.raises(ConfigError, match=r"^search\.preselect: no architecture of model\.arch has pretrained "
                                          r"weights to score \(scratch_cnn, test_resnet train from scratch\)"):
        study_from_dict(study({"top_k": 1}, model={"arch": {"grid": ["scratch_cnn", "test_resnet"]}}))
    with pytest.raises(ConfigError, match=r"^search\.preselect\.score: leep needs the source classifier"):
        study_from_dict(study({"score": "leep", "top_k": 1},
                              model={"arch": {"grid": ["resnet18", "test_resnet"]}, "weights": "imagenet"}))


def test_keep_counts():
    assert [PreselectSpec(top_k=k).keep(4) for k in (1, 3, 9, 0.25, 0.3, 0.99)] == [1, 3, 4, 1, 2, 4]


def test_a_score_registered_at_run_time_is_valid_and_listed(monkeypatch, capsys):
    from analysis.transferability import SCORES
    from orchestrator.cli import main
    monkeypatch.setattr(SCORES, "_items", dict(SCORES._items))
    monkeypatch.setattr(SCORES, "_about", dict(SCORES._about))

    @SCORES.register("my_score", description="my score, for this test")
    def mine(features, labels, source_logits=None):
        return 0.0

    assert study_from_dict(study({"score": "my_score", "top_k": 1})).search.preselect.score == "my_score"
    assert main(["list", "scores", "my_*"]) == 0
    assert capsys.readouterr().out.split() == ["my_score", "my", "score,", "for", "this", "test"]
