"""Peer libraries, each in its own virtual environment under `benchmarks/.peers/`.

tf-explain 0.3.1, xplique 2.0.2 and tf-keras-vis 0.8.7, each next to the same TensorFlow as
the main environment.

`ensure_peer` creates the environment and installs the peer the first time (about a minute
each: TensorFlow is downloaded once per environment); later runs reuse it. `PeerProcess`
starts `peer_worker.py` inside the environment and talks to it one JSON line at a time.
Nothing here touches the environment the harness itself runs in.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / ".peers"


def recipes(tf_version: str) -> dict[str, dict]:
    """How to install each peer next to the same TensorFlow as the main environment."""
    major_minor = ".".join(tf_version.split(".")[:2])
    tensorflow = f"tensorflow=={tf_version}"
    return {
        "tf-explain": {
            "steps": [[tensorflow, "tf-explain==0.3.1", "opencv-python-headless"]],
            "check": "import tf_explain, cv2",
        },
        "xplique": {
            # xplique 2.0.2 pins TensorFlow <= 2.20 in its metadata, so it is installed
            # without its dependencies, and they are listed here instead. TensorFlow
            # Probability (imported by xplique) needs tf-keras of the same TF version.
            "steps": [
                [
                    tensorflow,
                    f"tf-keras=={major_minor}.*",
                    "tensorflow-probability==0.25.0",
                    "deprecated",
                    "einops",
                    "matplotlib",
                    "opencv-python-headless",
                    "scikit-image<=0.25.2",
                    "scikit-learn<=1.7.2",
                    "scipy<=1.15.3",
                ],
                ["--no-deps", "xplique==2.0.2"],
            ],
            "check": "import xplique; from xplique.attributions import GradCAM, Occlusion",
        },
        "tf-keras-vis": {
            # tf-keras-vis 0.8.7 imports `scipy.ndimage.interpolation` (gone after SciPy 1.15)
            # and `tensorflow.keras` (Keras 3 under TensorFlow 2.16+).
            "steps": [
                [
                    tensorflow,
                    "tf-keras-vis==0.8.7",
                    "scipy<=1.15.3",
                    "pillow",
                    "deprecated",
                    "imageio",
                    "packaging",
                ]
            ],
            "check": "import tf_keras_vis; from tf_keras_vis.scorecam import Scorecam",
        },
    }


def peer_python(name: str) -> Path:
    return PEERS_DIR / name / "bin" / "python"


def ensure_peer(name: str, tf_version: str, log=print) -> tuple[bool, str]:
    """Create and install the peer's environment unless it is there; `(ok, message)`."""
    recipe = recipes(tf_version)[name]
    env_dir = PEERS_DIR / name
    stamp = env_dir / ".benchmark-installed"
    wanted = json.dumps(recipe, sort_keys=True)
    log_path = PEERS_DIR / f"{name}-install.log"
    if stamp.exists() and stamp.read_text() == wanted and peer_python(name).exists():
        return True, "reused"
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    log(f"  installing {name} into {env_dir} (first run only; log: {log_path}) ...")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    except Exception as error:  # noqa: BLE001 - reported, the benchmark goes on without it
        return False, f"could not create its virtualenv: {error}"
    python = str(peer_python(name))
    with open(log_path, "w") as out:
        for step in recipe["steps"]:
            command = [python, "-m", "pip", "install", "--quiet", *step]
            out.write("$ " + " ".join(command) + "\n")
            out.flush()
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                return False, f"pip install failed ({' '.join(step)}); see {log_path}"
        check = subprocess.run(
            [python, "-c", recipe["check"]],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        if check.returncode != 0:
            return False, f"installed but `{recipe['check']}` fails; see {log_path}"
    stamp.write_text(wanted)
    return True, "installed"


class PeerProcess:
    """A running `peer_worker.py` inside a peer's environment."""

    def __init__(self, name: str, workload_path: Path, timeout: float = 600.0):
        self.name = name
        self.timeout = timeout
        self.log_path = PEERS_DIR / f"{name}-worker.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(HERE),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PYTHONHOME", None)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - lives as long as the worker
        self.proc = subprocess.Popen(
            [str(peer_python(name)), str(HERE / "peer_worker.py"), name, str(workload_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=str(HERE),
            env=env,
        )
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"{name} worker did not start: {ready}")

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read(self) -> dict:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty as error:
            raise RuntimeError(f"{self.name} worker timed out; see {self.log_path}") from error
        if line is None:
            raise RuntimeError(f"{self.name} worker exited; see {self.log_path}")
        return json.loads(line)

    def request(self, **message) -> dict:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {reply['error']}")
        return reply

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self._log.close()
