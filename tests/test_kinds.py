"""The registry of kinds: TF-free, the source of every run name, layout and label, and what
`_tags` builds and parses; a kind added to it is parsed with no other change."""

from __future__ import annotations

import subprocess
import sys

import pytest

from keras_convviz import _tags, kinds


def test_registry_imports_no_tensorflow_keras_or_methods():
    code = (
        "import sys, keras_convviz.kinds, keras_convviz._tags; "
        "heavy = [n for n in sys.modules if n in ('tensorflow', 'keras') "
        "or n.startswith('keras_convviz.methods')]; assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _picture_tags(kind: kinds.Kind) -> list[tuple[str, _tags.PictureTag]]:
    """(tag, what it names) of the pictures a kind's layout has, built with `_tags.tag`."""
    run = kind.run
    if kind.layout == kinds.LAYER_AND_PROBE:
        return [
            (_tags.tag(run, "base/conv1", 3), _tags.PictureTag(run, "base/conv1", 3)),
            (_tags.tag(run, "conv", _tags.ALL_IMAGES), _tags.PictureTag(run, "conv", None)),
        ]
    if kind.layout == kinds.PROBE:
        return [
            (_tags.tag(run, 0), _tags.PictureTag(run, None, 0)),
            (_tags.tag(run, _tags.ALL_IMAGES), _tags.PictureTag(run, None, None)),
        ]
    # One picture per layer: a layer may be named like a probe image.
    return [
        (_tags.tag(run, "base/conv"), _tags.PictureTag(run, "base/conv", None)),
        (_tags.tag(run, "image_1"), _tags.PictureTag(run, "image_1", None)),
    ]


def _quantity(pattern: str) -> str:
    return pattern.replace("*", "3")


def assert_parses_back(kind: kinds.Kind) -> None:
    for tag, picture in _picture_tags(kind):
        assert _tags.parse_picture_tag(tag) == picture, tag
        for pattern in kind.quantities:
            quantity = _quantity(pattern)
            scalar = _tags.tag(tag, quantity)
            assert _tags.parse_scalar_tag(scalar) == (picture, quantity), scalar
    # Another layout's tag of the same run names no picture.
    if kind.layout == kinds.PROBE:
        assert _tags.parse_picture_tag(_tags.tag(kind.run, "conv", 0)) is None
    if kind.layout == kinds.LAYER_AND_PROBE:
        assert _tags.parse_picture_tag(_tags.tag(kind.run, 0)) is None


@pytest.mark.parametrize("kind", kinds.picture_kinds(), ids=lambda k: k.run)
def test_every_picture_kind_parses_back_what_it_builds(kind):
    assert_parses_back(kind)
    assert kind.run in _tags.all_runs()


def test_runs_without_pictures_are_not_pictures():
    for kind in kinds.KINDS.values():
        if not kind.pictures:
            assert kind.run not in _tags.all_runs()
            assert _tags.parse_picture_tag(_tags.tag(kind.run, "conv", 0)) is None
            assert _tags.parse_picture_tag(_tags.tag(kind.run, 0)) is None


@pytest.mark.parametrize("layout", [kinds.LAYER_AND_PROBE, kinds.PROBE, kinds.LAYER])
def test_a_new_kind_is_parsed_with_no_other_change(layout, monkeypatch):
    new = kinds.Kind("toy_maps", "Toy maps", "cam", layout, ("max", "unit_*"))
    assert _tags.parse_picture_tag(_picture_tags(new)[0][0]) is None  # unknown before
    monkeypatch.setitem(kinds.KINDS, new.run, new)
    assert_parses_back(new)
    assert _tags.all_runs()[-1] == new.run
    by_layout = {
        kinds.LAYER_AND_PROBE: _tags.layer_runs(),
        kinds.PROBE: _tags.probe_runs(),
        kinds.LAYER: _tags.layer_picture_runs(),
    }
    assert [layout for layout, runs in by_layout.items() if new.run in runs] == [layout]


def test_method_registries_take_their_runs_from_the_kinds():
    from keras_convviz.methods.cam import CAM_METHODS
    from keras_convviz.methods.faithfulness import FLOORS
    from keras_convviz.methods.saliency import SALIENCY_METHODS

    for family, registry in (("cam", CAM_METHODS), ("saliency", SALIENCY_METHODS)):
        assert set(registry) == {k.method for k in kinds.of_family(family)}, family
        for method, entry in registry.items():
            assert entry.run == kinds.for_method(family, method).run
    # The faithfulness floors score deletion and insertion; the uniform floor localization.
    faithfulness_floors = [k for k in kinds.of_family("floor") if k.writes(kinds.DELETION)]
    assert set(FLOORS) == {k.method for k in faithfulness_floors}
    assert kinds.get(_tags.FLOOR_UNIFORM).writes(kinds.IN_REGION)
    assert _tags.cam_run("gradcam++") == kinds.GRAD_CAM_PLUS_PLUS.run
    with pytest.raises(ValueError, match=r"`method` must be one of \['gradcam'"):
        kinds.for_method("cam", "gradcam+++")


def test_every_alert_rule_reads_a_quantity_its_kinds_write():
    from keras_convviz import _tags, checks
    from keras_convviz.alerts import RULES

    # The rules on the set-up and on fit's loss read the numbers `checks` computes.
    read_elsewhere = {
        (_tags.SETUP,): checks.SETUP_QUANTITIES,
        (_tags.FIT,): checks.FIT_QUANTITIES,
    }
    for rule in RULES.values():
        if rule.runs in read_elsewhere:
            assert rule.quantity in read_elsewhere[rule.runs], rule.name
            continue
        runs = rule.runs or tuple(kinds.KINDS)
        readers = [kinds.get(run) for run in runs]
        assert None not in readers, rule.name
        assert any(k.writes(rule.quantity) for k in readers), rule.name
        if rule.runs:
            assert all(k.writes(rule.quantity) for k in readers), rule.name


def test_a_kind_is_checked():
    with pytest.raises(ValueError, match=r"`layout` must be one of .* Received: layout='grid'"):
        kinds.Kind("x", "X", "cam", "grid")
    with pytest.raises(ValueError, match=r"`family` must be one of"):
        kinds.Kind("x", "X", "pictures", kinds.PROBE)
    with pytest.raises(ValueError, match=r"`run` must be a non-empty name without '/'"):
        kinds.Kind("a/b", "X", "cam", kinds.PROBE)
    assert kinds.ACTIVATION_MAXIMIZATION.writes("filter_12")
    assert not kinds.ACTIVATION_MAXIMIZATION.writes("max")
