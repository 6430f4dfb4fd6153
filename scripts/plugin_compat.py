"""The ConvViz tab's tests on TensorBoard 2.16 to 2.21 (a script, not run in CI).

    .venv/bin/python scripts/plugin_compat.py                 # 2.17 to 2.21, quick
    .venv/bin/python scripts/plugin_compat.py --full 2.16.2   # beside its own TensorFlow

Each version gets a throwaway venv under the system temp dir, then runs
`pytest tests/test_plugin.py` there without the browser test (the routes, the flags, the
entry point, a real `tensorboard` process). Quick: the venv sees this project's venv (a .pth
file adds its site-packages) and has its own `tensorboard==VERSION` first on sys.path, so
TensorFlow and Keras stay the project's and what changes is TensorBoard's loader, data
provider, flags and app. `--full`: a venv with `tensorflow==VERSION` (which pins that
TensorBoard) and this package, over logs this venv writes; needed for 2.16, whose
TensorBoard reads tensors with `np.string_`, gone in the NumPy 2 that TF 2.21 needs. Prints
one line per version.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["2.17.1", "2.18.0", "2.19.0", "2.20.0", "2.21.0"]


def make_env(version: str, base: Path, full: bool) -> str:
    env_dir = base / f"{'full' if full else 'tb'}-{version}"
    python = str(env_dir / "bin" / "python")
    if env_dir.exists():
        return python
    venv.create(env_dir, with_pip=True)
    pip = [python, "-m", "pip", "install", "-q"]
    if full:
        subprocess.run([*pip, f"tensorflow=={version}", "pytest", str(ROOT)], check=True)
        return python
    # addsitedir also runs the project venv's .pth files (the editable install's finder).
    purelib = sysconfig.get_paths()["purelib"]
    site = next((env_dir / "lib").glob("python*/site-packages"))
    (site / "project_venv.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
    # --ignore-installed: the project's own tensorboard is visible through the .pth.
    subprocess.run([*pip, "--no-deps", "--ignore-installed", f"tensorboard=={version}"], check=True)
    return python


def run(version: str, base: Path, full: bool) -> str:
    python = make_env(version, base, full)
    env = dict(os.environ)
    if full:
        # keras_convviz's core crashes on TF 2.16 (a segfault in the compiled pass, seen
        # here), so the logs come from this venv's TensorFlow; the tab only reads them.
        env["CONVVIZ_PLUGIN_LOGS"] = str(base / "logs")
        if not (base / "logs").exists():
            subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "tests/test_plugin.py", "-k", "every_epoch_of_every_tag_served_without"],
                cwd=ROOT, env=env, check=True, capture_output=True,
            )  # fmt: skip
    found = subprocess.run(
        [python, "-c", "import tensorboard, tensorflow; print(tensorboard.__version__, "
         "tensorflow.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()[-2:]  # fmt: skip
    start = time.monotonic()
    test = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_plugin.py",
         "-k", "not browser"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    lines = test.stdout.strip().splitlines()
    summary = lines[-1] if lines else test.stderr.strip()[-300:]
    if test.returncode:
        print(test.stdout[-4000:], test.stderr[-2000:], file=sys.stderr)
    status = "ok" if test.returncode == 0 else "FAILED"
    return (
        f"tensorboard {found[0]} (tensorflow {found[1]}): {status} "
        f"({summary}; {time.monotonic() - start:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", default=QUICK)
    parser.add_argument("--full", action="store_true", help="install tensorflow==VERSION")
    args = parser.parse_args()
    base = Path(tempfile.gettempdir()) / "convviz_plugin_compat"
    base.mkdir(exist_ok=True)
    for version in args.versions:
        print(run(version, base, args.full), flush=True)


if __name__ == "__main__":
    main()
