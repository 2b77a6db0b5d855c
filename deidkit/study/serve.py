"""Serving the study form to participants: Voilà runs notebook 06 on a study folder, one kernel per page.

``deidkit study serve STUDY_DIR --port 8866`` verifies the study folder first (every stimulus against the
manifest's sha256: a changed or missing file refuses to serve), then runs Voilà with the folder in
``$DEIDKIT_STUDY_DIR`` and appends Voilà's log, one line per HTTP request included, to an access log
(``STUDY_DIR/serve.log`` by default). Participants open ``http://HOST:PORT/?participant=<id>``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

NOTEBOOK = "06_human_study_form.ipynb"


def study_notebook() -> Path:
    """Notebook 06 of the kit (the ``notebooks/`` folder beside the package in a checkout)."""
    path = Path(__file__).resolve().parents[2] / "notebooks" / NOTEBOOK
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the study notebook is missing (serve from a checkout of the kit)")
    return path


def form_notebook(dest: str | os.PathLike) -> Path:
    """Notebook 06 without its markdown (the researcher's explanations) and outputs: what participants are served.
    Under Voilà the notebook's code shows only the form (see ``participant_mode`` in the notebook)."""
    import json

    nb = json.loads(study_notebook().read_text())
    nb["cells"] = [{**c, "outputs": [], "execution_count": None} for c in nb["cells"] if c["cell_type"] == "code"]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(nb, indent=1))
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(notebook: Path, port: int, ip: str = "127.0.0.1") -> list[str]:
    """The Voilà command line: only the form (no source, no errors' tracebacks), request logging on."""
    return [sys.executable, "-m", "deidkit.study.voila_access", str(notebook), f"--port={port}", f"--Voila.ip={ip}",
            "--no-browser", "--strip_sources=True", "--show_tracebacks=False",
            "--ServerApp.log_level=INFO", "--Voila.log_level=INFO"]


def start_server(study_dir: str | os.PathLike, port: int | None = None, ip: str = "127.0.0.1",
                 log: str | os.PathLike | None = None, wait_s: float = 120.0) -> tuple[subprocess.Popen, int]:
    """Verify the study folder, start Voilà on it, wait until it answers; returns (process, port).

    Raises :class:`~deidkit.study.design.StudyError` for a study folder whose files do not match their
    manifest, and ``RuntimeError`` when the server does not come up (its log says why)."""
    from deidkit.study.design import load_study

    study = load_study(study_dir, verify=True)  # refuses changed, missing or extra-broken stimuli
    port = port or free_port()
    log = Path(log) if log else study.folder / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEIDKIT_STUDY_DIR": str(study.folder.resolve())}
    notebook = form_notebook(Path(tempfile.mkdtemp(prefix="deidkit-serve-")) / "study_form.ipynb")
    with open(log, "ab") as fh:
        fh.write(f"--- serving {study.folder} on {ip}:{port} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        proc = subprocess.Popen(serve_command(notebook, port, ip), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                cwd=str(notebook.parent))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila stopped (exit {proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://{'127.0.0.1' if ip == '0.0.0.0' else ip}:{port}/", timeout=2):
                return proc, port
        except urllib.error.HTTPError:  # any HTTP answer: the server is up
            return proc, port
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"voila did not answer on port {port} within {wait_s:.0f} s; see {log}")


def stop_server(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
