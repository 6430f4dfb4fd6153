"""Section 3 of BENCHMARKS.md (`--only peers`): occlusion and Grad-CAM against the peers.

tf-explain and xplique on the same model, weights and images, in rounds alternating with
the peer's own process.
"""

from __future__ import annotations

from pathlib import Path

import workload

import keras_convviz as kcv

from .common import check, rounds_vs_peer, start_peer, table, target, write_workload
from .occlusion import occlusion_default_baseline

PEER_GOALS = {("tf-explain", "occlusion"): 4.0, ("xplique", "occlusion"): 2.0}


def run(cfg, ctx):
    model, images = ctx["model"], ctx["images"]
    rows, targets, notes, installs = [], [], [], {}
    workload_path = Path(ctx["tmp"]) / "workload.npz"
    write_workload(model, images, workload_path)
    for name in ("tf-explain", "xplique"):
        peer = start_peer(name, ctx, workload_path, installs, notes, " Ours vs the floor stands.")
        if peer is None:
            continue
        try:
            tasks = [("occlusion", p, s) for p, s in cfg["peer_occlusion"]] + [("grad_cam", 0, 0)]
            for method, patch, stride in tasks:
                if name == "tf-explain" and method == "occlusion" and stride != patch:
                    continue  # tf-explain has no stride
                if method == "occlusion":

                    def ours_fn(p=patch, s=stride):
                        return kcv.occlusion_sensitivity(
                            model, images, patch_size=p, stride=s, class_index=0
                        )

                    request = {"op": "occlusion", "patch": patch, "stride": stride}
                    label = f"occlusion p{patch}/s{stride}"
                else:

                    def ours_fn():
                        return kcv.grad_cam(
                            model, images, layer_name=workload.CAM_LAYER, class_index=0
                        )

                    request = {"op": "grad_cam"}
                    label = "Grad-CAM"
                ctx["log"](f"  {name}: {label}")
                try:
                    result = rounds_vs_peer(
                        peer, ours_fn, request, cfg["peer_rounds"], cfg["peer_reps"]
                    )
                except RuntimeError as error:
                    notes.append(f"{name} {label} failed: {error}")
                    continue
                goal = PEER_GOALS.get((name, method))
                if name == "xplique" and method == "grad_cam":
                    goal = 1.0
                met = None if goal is None else result["speedup"] >= goal
                row = {"peer": name, "method": label, **result}
                row["target"] = "report" if goal is None else f">= {goal:g}x"
                row["met"] = check(met)
                rows.append(row)
                if goal is not None:
                    targets.append(
                        target(f"{label}: ours vs {name}", result["speedup"], row["target"], met)
                    )
        finally:
            peer.close()
    text = table(
        rows,
        [
            ("peer", "peer"),
            ("method", "method"),
            ("ours_ms", "ours ms"),
            ("peer_ms", "peer ms"),
            ("speedup", "peer/ours"),
            ("target", "target"),
            ("met", "met"),
            ("others_cores", "others' cores"),
        ],
    )
    notes += [
        "Same model (ending in logits), same weights, same 8 images, class 0 for every image "
        "in every tool. Rounds alternate (ours in this process, the peer in its own venv's "
        f"process); {cfg['peer_rounds']} rounds of {cfg['peer_reps']} calls each after a "
        "warm-up call; peer/ours = median over rounds of median(peer)/median(ours).",
        "tf-explain: OcclusionSensitivity().explain((x, None), model, 0, patch_size) on the "
        "8 images (it loops per image, model.predict in its default batch of 32, plus its "
        "heatmap/grid rendering); GradCAM().explain((x, None), model, 0, layer_name='conv3') "
        "(guided gradients, its default). No stride, so only stride = patch.",
        "xplique: Occlusion(model, batch_size=512, patch_size, patch_stride, "
        "occlusion_value).explain(x, one_hot) and GradCAM(model, conv_layer='conv3')"
        ".explain(x, one_hot); explainers built once, outside the timing.",
        "ours: kcv.occlusion_sensitivity(model, x, patch, stride, class_index=0) with its "
        f"defaults batch_size=256 and baseline={occlusion_default_baseline()!r}; "
        "kcv.grad_cam(model, x, 'conv3', class_index=0).",
    ]
    return {
        "rows": rows,
        "table": text,
        "notes": notes,
        "targets": targets,
        "installs": installs,
    }
