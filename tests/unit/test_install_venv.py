"""scripts/install-venv over real processes: two installs at once take turns, and an interrupted
install is never taken for an installed environment. A fake interpreter makes a fake pip that
logs and sleeps: nothing is downloaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "install-venv"

FAKE_PYTHON = """#!/bin/sh
# Stands in for `python -m venv DIR`: DIR/bin/pip logs its arguments and takes its time.
[ "$1" = -m ] && [ "$2" = venv ] || exit 9
echo "venv $3" >> "$INSTALL_LOG"
mkdir -p "$3/bin"
cat > "$3/bin/pip" <<'PIP'
#!/bin/sh
echo "pip $*" >> "$INSTALL_LOG"
sleep "$FAKE_PIP_SECONDS"
PIP
chmod +x "$3/bin/pip"
"""


def setup(tmp_path: Path, pip_seconds: str) -> tuple[dict[str, str], Path]:
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "install.log"
    env = {**os.environ, "INSTALL_LOG": str(log), "FAKE_PIP_SECONDS": pip_seconds}
    return env, log


def install(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--python",
            str(tmp_path / "fake-python"),
            "--dir",
            str(tmp_path / "venv"),
            "--",
            "tiny-package",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_installs_started_at_once_take_turns_and_install_once(tmp_path):
    env, log = setup(tmp_path, "0.5")
    first, second = install(tmp_path, env), install(tmp_path, env)
    outputs = [process.communicate(timeout=30)[0] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert (tmp_path / "venv" / ".installed").exists()
    assert log.read_text().splitlines() == [
        f"venv {tmp_path / 'venv'}",
        "pip install --quiet --upgrade pip",
        "pip install --quiet tiny-package",
    ]
    assert any("waiting for it" in text for text in outputs)
    assert any("is installed" in text for text in outputs)


def test_an_interrupted_install_leaves_no_marker_and_the_next_one_starts_over(tmp_path):
    env, log = setup(tmp_path, "30")
    interrupted = install(tmp_path, env)
    deadline = time.monotonic() + 20
    while "pip install" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and interrupted.poll() is None
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGTERM)
    interrupted.communicate(timeout=10)
    assert interrupted.returncode != 0
    assert (tmp_path / "venv").exists() and not (tmp_path / "venv" / ".installed").exists()

    env["FAKE_PIP_SECONDS"] = "0"
    again = install(tmp_path, env)
    output = again.communicate(timeout=30)[0]
    assert again.returncode == 0, output
    assert "not completely installed; starting over" in output
    assert (tmp_path / "venv" / ".installed").exists()
    assert log.read_text().splitlines().count(f"venv {tmp_path / 'venv'}") == 2


def test_a_failed_pip_leaves_no_marker(tmp_path):
    env, _ = setup(tmp_path, "not-a-number")  # sleep fails, so the fake pip exits non-zero
    failed = install(tmp_path, env)
    output = failed.communicate(timeout=30)[0]
    assert failed.returncode != 0 and "failed" in output
    assert not (tmp_path / "venv" / ".installed").exists()
