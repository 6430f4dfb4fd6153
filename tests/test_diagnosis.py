"""`keras_convviz.diagnosis`: alert records folded into one line per root cause."""

from __future__ import annotations

from keras_convviz.diagnosis import diagnose


def record(rule, subject, step, refers_to=(), advice="fix it", since=None):
    layer = subject.split("/", 1)[1] if "/" in subject else ""
    return {
        "rule": rule,
        "title": rule.replace("_", " "),
        "subject": subject,
        "layer": layer,
        "step": step,
        "epoch": step + 1,
        "since_epoch": step + 1 if since is None else since,
        "advice": advice,
        "meaning": "why",
        "quantity": "q",
        "evidence": f"{subject}/q",
        "refers_to": list(refers_to),
    }


def test_followers_fold_under_their_root_and_one_rule_makes_one_line():
    records = [
        record("dead_channels", "feature_maps/conv_b", 0),
        record("dead_channels", "feature_maps/conv_c", 1, since=1),
        # conv_a stalls below the dead layer; its no_gradient names the dead layer, and
        # its stalled update names its no_gradient: both end at the dead layer.
        record("no_gradient", "health/conv_a", 0, ["dead_channels/feature_maps/conv_b"]),
        record("stalled_updates", "filter_weights/conv_a", 1, ["no_gradient/health/conv_a"]),
        # A reference to an alert that never fired leaves it a root.
        record("collapsed_model", "health", 3, ["loss_at_chance/fit"], advice="other"),
    ]
    lines = diagnose(records)
    assert [line.rule for line in lines] == ["dead_channels", "collapsed_model"]
    dead = lines[0]
    assert dead.layers == ["conv_b", "conv_c"] and dead.where == "layers `conv_b`, `conv_c`"
    assert (dead.since_epoch, dead.epoch) == (1, 1)
    assert [(f["rule"], f["epoch"]) for f in dead.folded] == [
        ("no_gradient", 1),
        ("stalled_updates", 2),
    ]
    assert lines[1].where == "the probe's `health`" and lines[1].folded == []


def test_nothing_fired_is_no_line_and_a_record_twice_counts_once():
    assert diagnose([]) == []
    twice = [
        record("non_finite", "feature_maps/conv_a", 2),
        record("non_finite", "feature_maps/conv_a", 5),
    ]
    (line,) = diagnose(twice)
    assert line.epoch == 3 and line.subjects == ["feature_maps/conv_a"]


def test_a_reference_cycle_ends():
    records = [
        record("a_rule", "x/l1", 0, ["b_rule/x/l2"]),
        record("b_rule", "x/l2", 0, ["a_rule/x/l1"]),
    ]
    assert len(diagnose(records)) == 1
