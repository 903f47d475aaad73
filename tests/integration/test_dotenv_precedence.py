"""``.env`` fills in what the environment leaves unset, for every entry point; the environment wins.

Each entry point runs as a subprocess in an empty temporary directory holding only the ``.env``
written here, with a bare environment, so a developer's own ``.env`` or shell never matters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.servers import free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
# STOCK_PROVIDER is also set in the environment (it must win); QUOTE_TTL only here (it must apply).
DOTENV = "STOCK_PROVIDER=demo\nQUOTE_TTL=77\nWEB_CONCURRENCY=1\n"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text(DOTENV)
    return tmp_path


def bare_environment(**variables: str) -> dict[str, str]:
    """PATH, the repository importable, and only the QuantPulse variables a test sets."""
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT), "LANG": "C.UTF-8", **variables}


def run(command: list[str], workdir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=workdir,
        env=bare_environment(**variables),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "wsgi", *args]


def test_the_service_takes_dotenv_values_the_environment_leaves_unset(workdir: Path) -> None:
    script = (
        "import wsgi\n"
        "settings = wsgi.app.extensions['quantpulse'].service.settings\n"
        "print(settings.stock_provider, settings.quote_ttl)"
    )

    result = run([sys.executable, "-c", script], workdir, STOCK_PROVIDER="finnhub")

    assert result.stdout.split() == ["finnhub", "77"]


def test_the_cli_reads_dotenv_the_same_way(workdir: Path) -> None:
    result = run(flask("quantpulse", "stats", "--json"), workdir, STOCK_PROVIDER="finnhub")

    status = json.loads(result.stdout)["status"]
    assert status["provider_status"]["mode"] == "finnhub"
    assert status["cache_stats"]["cache_settings"]["stock_quote"] == 77
    assert "python-dotenv" not in result.stderr


@pytest.mark.parametrize(
    "args", [("--help",), ("quantpulse", "--help"), ("quantpulse", "check-keys")], ids=" ".join
)
def test_the_cli_is_quiet_on_stderr_when_nothing_is_wrong(workdir: Path, args: tuple[str, ...]) -> None:
    result = run(flask(*args), workdir)

    assert result.stderr == ""


def test_the_cli_stderr_has_notes_but_no_log_lines(workdir: Path) -> None:
    result = run(flask("quantpulse", "stats"), workdir)

    assert result.stderr.startswith("Note: REDIS_URL is unset")
    assert not [line for line in result.stderr.splitlines() if line.startswith("{")]


@pytest.fixture
def make_run(workdir: Path) -> Iterator[tuple[int, Path]]:
    """``make run`` in a directory holding the repository's entry points and its own ``.env``.

    The port in ``.env`` differs from the environment's, so serving on the latter proves it won.
    """
    for name in ("Makefile", "requirements.txt", "gunicorn.conf.py", "wsgi.py", "quantpulse"):
        (workdir / name).symlink_to(REPO_ROOT / name)
    dotenv_port, port = free_port(), free_port()
    (workdir / ".env").write_text(DOTENV + f"PORT={dotenv_port}\n")
    stderr = workdir / "stderr.log"
    installed = f"{VENV}/bin/.runtime-installed"  # -o: use this interpreter's packages as they are
    with stderr.open("w") as sink:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"VENV={VENV}", "-o", installed],
            cwd=workdir,
            env={"PATH": os.environ["PATH"], "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,
        )
    try:
        health = f"http://127.0.0.1:{port}/health"
        wait_until(lambda: requests.get(health, timeout=1).ok, timeout=30, what="make run")
        yield port, stderr
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


@pytest.mark.slow
def test_make_run_listens_on_the_environments_port_and_reads_the_rest_of_dotenv(make_run) -> None:
    port, stderr = make_run

    status = requests.get(f"http://127.0.0.1:{port}/stock/service/status", timeout=5).json()["status"]

    assert status["provider_status"]["mode"] == "demo", "STOCK_PROVIDER from .env"
    assert status["status"] == "operational"
    lines = [json.loads(line) for line in stderr.read_text().splitlines()]
    gunicorn = [line["message"] for line in lines if line["logger"].startswith("gunicorn")]
    assert f"Listening at: http://0.0.0.0:{port}" in " ".join(gunicorn), "gunicorn's lines are JSON too"
