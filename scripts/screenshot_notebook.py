"""A notebook with `ConvViz(display=True)` and `kcv.show`, run and photographed (not run in CI).

    .venv/bin/python scripts/screenshot_notebook.py docs/notebook_live_view.png

Writes a notebook that trains the demo CNN on the synthetic shapes for a few epochs with
the live view on, then calls `kcv.show`; runs it on a real kernel (nbclient, ipykernel),
saves it and reads it back, lays its cells and outputs out as one HTML page (code, text
streams and the outputs' own HTML, as a notebook front end shows them) and takes a
screenshot of that page in Debian's `chromium` through Playwright.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from html import escape
from pathlib import Path

import nbclient
import nbformat
from playwright.sync_api import sync_playwright

CELLS = [
    """\
import keras
import keras_convviz as kcv
from keras_convviz.datasets import make_shapes
from keras_convviz.demo import build_demo_model

data = make_shapes(512, seed=0)
probe = (data.images[:3], data.labels[:3])
model = build_demo_model()
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])""",
    """\
callback = kcv.ConvViz("logs/shapes", probe, display=True)
history = model.fit(data.images, data.labels, epochs=EPOCHS, verbose=2, callbacks=[callback])""",
    'kcv.show("logs/shapes", every=2)',
]

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ font: 13px system-ui, sans-serif; margin: 0; background: #fff; color: #222; }}
.cell {{ display: grid; grid-template-columns: 70px 1fr; margin: 6px 16px; }}
.prompt {{ color: #307fc1; font-family: monospace; text-align: right; padding: 6px 8px 0 0; }}
.prompt.out {{ color: #bf5b3d; }}
pre.code {{ background: #f7f7f7; border: 1px solid #e0e0e0; padding: 6px 8px; margin: 0;
  font: 12.5px/1.45 ui-monospace, monospace; white-space: pre-wrap; }}
pre.stream {{ margin: 4px 0; font: 12px/1.4 ui-monospace, monospace; white-space: pre-wrap; }}
pre.stderr {{ background: #fdd; padding: 4px 6px; }}
.output {{ padding: 4px 0; overflow-x: auto; }}
</style></head><body>{cells}</body></html>"""


# TensorFlow's C++ start-up log on the kernel's stderr (`I0000 00:00:...`), which
# TF_CPP_MIN_LOG_LEVEL does not silence all of: not what the picture is about.
_NATIVE_LOG = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:|WARNING: All log messages before absl|To enable the following)"
)


def page_of(notebook) -> str:
    """The notebook's cells as a page: code, then each output as a front end shows it."""
    parts = []
    for n, cell in enumerate(notebook.cells, start=1):
        parts.append(
            f'<div class="cell"><div class="prompt">[{n}]:</div>'
            f'<pre class="code">{escape(cell.source)}</pre></div>'
        )
        outputs = []
        for output in cell.get("outputs", []):  # a stream's pieces as one, as front ends do
            last = outputs[-1] if outputs else None
            if output["output_type"] == "stream" and last and last.get("name") == output["name"]:
                outputs[-1] = {**last, "text": last["text"] + output["text"]}
            else:
                outputs.append(output)
        for output in outputs:
            if output["output_type"] == "stream":
                text = "".join(
                    line
                    for line in output["text"].splitlines(keepends=True)
                    if not _NATIVE_LOG.match(line)
                )
                if not text.strip():
                    continue
                body = f'<pre class="stream {output["name"]}">{escape(text)}</pre>'
            elif "text/html" in output.get("data", {}):
                body = output["data"]["text/html"]
            elif "text/plain" in output.get("data", {}):
                body = f'<pre class="stream">{escape(output["data"]["text/plain"])}</pre>'
            else:
                continue
            prompt = f"[{n}]:" if output["output_type"] == "execute_result" else ""
            parts.append(
                f'<div class="cell"><div class="prompt out">{prompt}</div>'
                f'<div class="output">{body}</div></div>'
            )
    return PAGE.format(cells="".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", default="1100x1400", help="window WIDTHxHEIGHT")
    parser.add_argument("--full", action="store_true", help="the whole page, not the window")
    args = parser.parse_args()
    # The kernel inherits it: TensorFlow's start-up log is not what the picture is about.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    width, height = (int(v) for v in args.size.split("x"))
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="kcv-notebook-"))
    try:
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [
            nbformat.v4.new_code_cell(source.replace("EPOCHS", str(args.epochs)))
            for source in CELLS
        ]
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nbclient.NotebookClient(
            notebook,
            timeout=1200,
            kernel_name="python3",
            resources={"metadata": {"path": str(work)}},  # the kernel's working directory
        ).execute()
        nbformat.write(notebook, str(work / "live.ipynb"))
        notebook = nbformat.read(str(work / "live.ipynb"), as_version=4)  # as saved
        page = work / "notebook.html"
        page.write_text(page_of(notebook), encoding="utf-8")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            view = browser.new_page(viewport={"width": width, "height": height})
            view.goto(page.as_uri())
            view.screenshot(path=str(out), full_page=args.full)
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
