"""The diagnosis of a training: one line per root cause of its alerts.

Reads the alerts' JSON records (`alerts.Alert.record`, as the ConvViz tab and the HTML
report read them from the `alerts/` run) and says what is wrong, since which epoch, where
and what to try: an alert whose reading names another as its root (`refers_to`: a stalled
layer below a dead one, a collapse after a broken set-up) is folded under it, and the
roots of one rule with the same advice make one line over their layers. Imports no
TensorFlow and no Keras, so TensorBoard's plugin and the exports can read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What a subject that is no layer is, in words (as `alerts.Alert.where` says it), for
# records written before they carried `where`.
_PLACES = {"setup": "the training's set-up", "fit": "the training's loss (`fit`'s logs)"}


@dataclass
class Line:
    """One root cause.

    Attributes:
        rule: the root alert's rule; title: what went wrong.
        since_epoch: the first epoch its test held (the earliest of its layers); epoch:
            the epoch it fired.
        where: where, in words (`layer `conv2``, `layers `a`, `b``, the training's set-up).
        layers: the layers it fired on (empty for the model, the set-up or the loss).
        subjects: the root alerts' subjects (`feature_maps/conv2`), in firing order.
        quantity: the quantity that shows it; evidence: the root's evidence (a tag, or
            where to look when the number is no tag of ours).
        meaning: what it means; advice: what to try.
        folded: the alerts that follow from it, as `{rule, title, where, epoch,
            subject}`, in firing order.
    """

    rule: str
    title: str
    since_epoch: int
    epoch: int
    step: int
    where: str
    layers: list[str]
    subjects: list[str]
    quantity: str
    evidence: str
    meaning: str
    advice: str
    folded: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return dict(self.__dict__)


def key_of(record: dict) -> str:
    """The key an alert is referred to by (`alerts.reference`)."""
    return f"{record['rule']}/{record['subject']}"


def where_of(record: dict) -> str:
    if record.get("where"):
        return record["where"]
    if record.get("layer"):
        return f"layer `{record['layer']}`"
    return _PLACES.get(record["subject"], f"the probe's `{record['subject']}`")


def diagnose(records: list[dict]) -> list[Line]:
    """The root causes of one training's alert records, in the order they fired.

    Args:
        records: alert records (`alerts.Alert.record`); a rule fires once per subject, so
            a record seen twice (a log directory reused) counts once, at its first step.

    Returns:
        One `Line` per root cause; empty when nothing fired.
    """
    first: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: (r["step"], r.get("epoch", 0))):
        first.setdefault(key_of(record), record)

    order = {key: i for i, key in enumerate(first)}

    def root(key: str) -> str:
        path = [key]
        while True:
            parents = [k for k in first[key].get("refers_to") or () if k in first and k != key]
            if not parents:
                return key
            key = parents[0]
            if key in path:  # alerts naming each other: the first fired is the root
                return min(path[path.index(key) :], key=order.get)
            path.append(key)

    lines: dict[tuple[str, str], Line] = {}
    followers: dict[str, list[dict]] = {}
    for key, record in first.items():
        top = root(key)
        if top != key:
            followers.setdefault(top, []).append(record)
            continue
        group = (record["rule"], record.get("advice", ""))
        line = lines.get(group)
        if line is None:
            lines[group] = Line(
                rule=record["rule"],
                title=record["title"],
                since_epoch=record["since_epoch"],
                epoch=record["epoch"],
                step=record["step"],
                where=where_of(record),
                layers=[record["layer"]] if record.get("layer") else [],
                subjects=[record["subject"]],
                quantity=record.get("quantity", ""),
                evidence=record.get("evidence", ""),
                meaning=record.get("meaning", ""),
                advice=record.get("advice", ""),
            )
            continue
        line.subjects.append(record["subject"])
        line.since_epoch = min(line.since_epoch, record["since_epoch"])
        if record.get("layer") and record["layer"] not in line.layers:
            line.layers.append(record["layer"])
            line.where = "layers " + ", ".join(f"`{layer}`" for layer in line.layers)
    for line in lines.values():
        for subject in line.subjects:
            for record in followers.get(f"{line.rule}/{subject}", []):
                line.folded.append(
                    {
                        "rule": record["rule"],
                        "title": record["title"],
                        "where": where_of(record),
                        "epoch": record["epoch"],
                        "subject": record["subject"],
                    }
                )
        line.folded.sort(key=lambda f: f["epoch"])
    return list(lines.values())
