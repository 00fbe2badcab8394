"""The README's commands, run as an operator runs them (through `make`), so that a broken
recipe fails the suite: `make deploy-dry-run`, `make run` and `make run-spin`. Their build
prerequisites are skipped (`make -o`): the suite has built everything already."""

import os
import signal
import subprocess

import pytest
import requests

from conftest import ROOT, free_port, wait_until


def make(*args: str) -> list[str]:
    return ["make", "--no-print-directory", *args]


@pytest.mark.cloudflare
def test_make_deploy_dry_run_accepts_config_and_build(tmp_path):
    # The transcoder container's image needs a Docker engine to build; the dry run checks
    # everything else (--containers-rollout=none skips the image, as a deploy without Docker would).
    out = subprocess.run(make("-o", "build-worker", "deploy-dry-run", f"DRY_RUN_OUT={tmp_path}"),
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "transcoder/Dockerfile" in text, "the transcoder container is declared"
    for binding in ["KV", "DB", "BLOBS", "CHANNEL_ROOM", "JOBS", "TRANSCODER"]:
        assert binding in text, f"{binding} missing from dry-run output:\n{text}"
    assert any(p.suffix == ".wasm" for p in tmp_path.iterdir())


def serve(tmp_path, args: list[str], env: dict[str, str]) -> None:
    """Runs a serving make target until GET /api/health answers 200 on env["PORT"], then
    stops it (its whole process group) and checks that it was still running."""
    log_path = tmp_path / "make.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(make(*args), cwd=ROOT, env={**os.environ, **env}, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{env['PORT']}/api/health"

    def healthy():
        if process.poll() is not None:
            pytest.fail(f"make {' '.join(args)} exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(healthy, timeout_s=90, interval_s=0.3)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.mark.cloudflare
def test_make_run_serves_the_worker_and_the_transcoder(tmp_path):
    # The suite builds the transcoder in debug; `make run` uses the release build by default.
    serve(tmp_path, ["-o", "build", "run"], {
        "PORT": str(free_port()), "TRANSCODER_PORT": str(free_port()), "SMTP_PORT": str(free_port()),
        "STATE": str(tmp_path / "state"),
        "TRANSCODER_BIN": str(ROOT / "target" / "debug" / "transcoder")})


@pytest.mark.spin
def test_make_run_spin_serves_the_component(tmp_path):
    serve(tmp_path, ["-o", "build-spin", "run-spin"], {
        "PORT": str(free_port()), "STATE": str(tmp_path / "state")})
