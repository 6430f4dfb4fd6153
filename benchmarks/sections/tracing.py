"""Section 6 of BENCHMARKS.md (`--only tracing`): tracing counts and Python ops.

Every compiled function after 10 functional calls and after 10 epochs of fit.
"""

from __future__ import annotations

from pathlib import Path

import workload

import keras_convviz as kcv
from keras_convviz.core.shared import core_for

from .common import table, target

FORBIDDEN_OPS = {"PyFunc", "EagerPyFunc", "PyFuncStateless"}


def graph_ops(concrete) -> list[str]:
    graph_def = concrete.graph.as_graph_def()
    ops = [node.op for node in graph_def.node]
    for function in graph_def.library.function:
        ops += [node.op for node in function.node_def]
    return ops


def concrete_functions(fn) -> list:
    lister = getattr(fn, "_list_all_concrete_functions", None)
    if lister is not None:
        return list(lister())
    return [fn.get_concrete_function()]


def inspect_functions(named: dict) -> list[dict]:
    """Tracing count and forbidden (Python) ops of each compiled function."""
    rows = []
    for name, fn in named.items():
        ops: list[str] = []
        for concrete in concrete_functions(fn):
            ops += graph_ops(concrete)
        forbidden = sorted(op for op in ops if op in FORBIDDEN_OPS)
        rows.append(
            {
                "function": name,
                "traces": fn.experimental_get_tracing_count(),
                "graph_ops": len(ops),
                "py_ops": len(forbidden),
            }
        )
    return rows


def describe_need(need) -> str:
    """A short name of a need in a plan's key: `Occlusion(patch=8, stride=8, B=256)`."""
    fields = []
    for name in ("ref", "method", "patch", "stride", "samples", "steps", "batch_size"):
        value = getattr(need, name, None)
        if value is None or value == 0:
            continue
        if name == "ref":
            value = value.path
        elif name in ("patch", "stride"):
            value = value[0] if value[0] == value[1] else value
        fields.append(f"{'B' if name == 'batch_size' else name}={value}")
    return f"{type(need).__name__}({', '.join(fields)})"


def core_functions(model) -> dict:
    """The compiled passes of a model's core (`core_for(model).passes`), named by their needs."""
    named = {}
    for key, fn in core_for(model).passes.items():
        plan_key = key[0]
        kinds: dict[str, list[str]] = {}
        for need in plan_key:
            kinds.setdefault(type(need).__name__, []).append(describe_need(need))
        parts = [
            f"{kind} x{len(items)}" if len(items) > 2 else " + ".join(items)
            for kind, items in kinds.items()
        ]
        named[f"pass[{' + '.join(parts)}]"] = fn
    return named


def run(cfg, ctx):
    from keras_convviz.datasets import make_shapes
    from keras_convviz.demo import train_demo_model

    # Functional explainers: 10 calls each on new image contents of the same shape.
    model = workload.build_cnn()
    for call in range(10):
        x = workload.probe_images(8, 64, seed=100 + call)
        kcv.feature_maps(model, x)
        kcv.grad_cam(model, x)
        kcv.occlusion_sensitivity(model, x, patch_size=8)
        kcv.grad_cam(model, x, method=["gradcam++", "layercam", "eigencam", "scorecam"])
        kcv.saliency(model, x, method=["gradient", "smoothgrad", "integrated_gradients"])
    functional = inspect_functions(core_functions(model))
    for row in functional:
        row["where"] = "functional API, 10 calls"

    # Training: ConvViz at freq=1 over 10 epochs of fit.
    train = make_shapes(64, image_size=64, seed=0)
    val = make_shapes(16, image_size=64, seed=10_000)
    callback = kcv.ConvViz(
        str(Path(ctx["tmp"]) / "tracing_logs"),
        probe=(val.images[:8], val.labels[:8]),
        saliency=True,
    )
    # The process's drawing functions, shared by every callback and fit: traced once per
    # picture layout (channels, filters shown), or once for the process; here, what this fit
    # traced of them.
    from keras_convviz import _rendering
    from keras_convviz.callbacks import feature_maps, filter_weights

    shared = {
        "feature_maps.render_layer (per picture layout)": feature_maps.render_layer,
        "filter_weights.render_kernel (per picture layout)": filter_weights.render_kernel,
        "_rendering.draw_heatmap_panels (one for the process)": _rendering._SHARED_PANEL,
    }
    per_layer = ("feature_maps.render_layer", "filter_weights.render_kernel")
    before = {name: fn.experimental_get_tracing_count() for name, fn in shared.items()}
    trained, _ = train_demo_model(train, epochs=10, callbacks=[callback])
    named = core_functions(trained)
    for cb in callback.callbacks:
        render = getattr(cb, "_render", None)
        if render is not None:
            named[f"{type(cb).__name__}._render"] = render
    fit = inspect_functions(named)
    conv_layers = len(core_for(trained).graph.conv_layers())
    for row in inspect_functions(shared):
        row["traces"] -= before[row["function"]]
        row["limit"] = conv_layers if row["function"].startswith(per_layer) else 1
        fit.append(row)
    for row in fit:
        row["where"] = "ConvViz over 10 epochs of fit"
    rows = functional + fit
    text = table(
        rows,
        [
            ("where", "where"),
            ("function", "compiled function"),
            ("traces", "traces"),
            ("graph_ops", "ops in graph + library"),
            ("py_ops", "PyFunc/EagerPyFunc ops"),
        ],
    )
    # A function of one callback or call traces once; a shared one at most once per layer
    # shape (and not at all when an earlier fit in the process drew the same shapes).
    max_traces = max(r["traces"] / r.get("limit", 1) for r in rows)
    py_ops = sum(r["py_ops"] for r in rows)
    return {
        "rows": rows,
        "table": text,
        "notes": [
            "Functional API: 10 calls each of kcv.feature_maps, kcv.grad_cam, "
            "kcv.occlusion_sensitivity(patch_size=8), kcv.grad_cam(method=['gradcam++', "
            "'layercam', 'eigencam', 'scorecam']) and kcv.saliency(method=['gradient', "
            "'smoothgrad', 'integrated_gradients']) on new image contents; one compiled pass "
            "per call (core_for(model).passes, named by the needs of its plan). Fit: the demo "
            "model, 10 epochs, ConvViz(log_dir, probe, saliency=True) at freq=1.",
            "Tracing counts from tf.function.experimental_get_tracing_count(); ops from "
            "get_concrete_function().graph.as_graph_def(), nodes and function library.",
        ],
        "targets": [
            target(
                "traces per compiled function (10 calls / 10 epochs; shared ones per picture)",
                max_traces,
                "<= 1",
                max_traces <= 1,
            ),
            target("PyFunc/EagerPyFunc ops in the compiled graphs", py_ops, "0", py_ops == 0),
        ],
    }
