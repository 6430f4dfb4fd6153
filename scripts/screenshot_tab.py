"""Screenshots of the ConvViz tab in a real TensorBoard, for the README (not run in CI).

    .venv/bin/convviz demo --epochs 12            # or any logs of keras_convviz
    .venv/bin/python scripts/screenshot_tab.py logs/demo docs/tensorboard_convviz_tab.png

    # the shortcut demo: Grad-CAM with each probe image's region outlined (`regions=`)
    .venv/bin/convviz demo --shortcut --log-dir logs/shortcut
    .venv/bin/python scripts/screenshot_tab.py logs/shortcut docs/tensorboard_convviz_shortcut.png \
        --kind grad_cam --outline --cell 104 --evidence --size 1700x1150

    # two runs side by side: logs/lr=1e-3 and logs/lr=3e-2, the demo's model trained by
    # `demo.train_demo_model(..., learning_rate=lr)` with `ConvViz(f"logs/lr={lr}", ...)`
    .venv/bin/python scripts/screenshot_tab.py logs docs/tensorboard_convviz_compare.png \
        --kind grad_cam --run lr=1e-3 --compare lr=3e-2 --path-prefix /proxy/6006 --size 1700x1000

Starts `tensorboard --logdir LOGDIR` on a free port of 127.0.0.1, opens the ConvViz tab in
Debian's `chromium` through Playwright (no browser download), optionally picks a kind,
experiment, layer and a run to compare with, turns the regions' outline on (`--outline`), lights the
chart of the diagnosis's first line (`--evidence`), and writes a PNG; `--dark` emulates a dark
system theme. The view is picked by the link (the tab's `p.convviz.*` fragment keys), as a
user following it would see it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir")
    parser.add_argument("out")
    parser.add_argument("--kind", default=None, help="e.g. grad_cam (default: the first)")
    parser.add_argument("--layer", default=None)
    parser.add_argument("--run", default=None, help="the experiment, e.g. lr=1e-3")
    parser.add_argument("--compare", default=None, help="another experiment, e.g. lr=1e-2")
    parser.add_argument("--epoch", default=None, help="1-based, as Keras prints it")
    parser.add_argument("--path-prefix", default="", help="as tensorboard's --path_prefix")
    parser.add_argument("--outline", action="store_true", help="outline the regions (regions=)")
    parser.add_argument("--cell", default=None, help="the cell size in px (the tab's slider)")
    parser.add_argument(
        "--evidence", action="store_true", help="click the diagnosis's first line: its chart lit"
    )
    parser.add_argument("--dark", action="store_true")
    parser.add_argument("--size", default="1500x1000", help="window WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    command = [exe, "--logdir", args.logdir, "--host", "127.0.0.1", "--port", str(port)]
    if args.path_prefix:
        command.append(f"--path_prefix={args.path_prefix}")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}{args.path_prefix.rstrip('/')}"
    kind = args.kind or "feature_maps"
    view = {
        "kind": args.kind,
        "run": args.run and f"{args.run}/{kind}",
        "layer": args.layer,
        "epoch": args.epoch,
        "compare": args.compare and f"{args.compare}/{kind}",
        "outline": "on" if args.outline else None,
        "cell": args.cell,
    }
    fragment = "&".join(
        f"p.convviz.{key}={urllib.parse.quote(value, safe='')}"
        for key, value in view.items()
        if value
    )
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/data/plugins_listing", timeout=5) as r:
                    if json.load(r).get("convviz", {}).get("enabled"):
                        break
            except OSError:
                pass
            time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page(
                viewport={"width": width, "height": height},
                color_scheme="dark" if args.dark else "light",
            )
            page.goto(f"{url}/#convviz" + (f"&{fragment}" if fragment else ""))
            frame = None
            while frame is None:
                frame = next((f for f in page.frames if "plugin_entry" in f.url), None)
                page.wait_for_timeout(200)
            frame.wait_for_selector("#sheet img[src]")
            if args.kind:
                frame.wait_for_selector(f"#sheet img[data-tag^='{args.kind}/']")
            if args.compare:
                frame.wait_for_selector("#sheet tr.compared img[src]")
            if args.outline:
                frame.wait_for_selector("#now svg.region")
            if args.evidence:
                frame.locator("#diagnosis .evidence-link").first.click()
                frame.wait_for_selector("#scalars .plot.evidence")
            frame.wait_for_function(
                "[...document.querySelectorAll('#sheet img[src], #now img:not([hidden])')]"
                ".every((i) => i.complete && i.naturalWidth > 0)"
            )
            page.wait_for_timeout(500)
            page.screenshot(path=args.out)
            browser.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
