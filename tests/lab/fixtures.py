"""pytest fixtures for the lab: ``lab`` (one per test), ``lab_env`` (that lab with this
process's NIXMOX_* environment pointed at it, through its API token), ``lab_root_env`` (the
same through a root@pam password login) and ``lab_process`` (one per session).

Import them in a conftest.py:
``from tests.lab.fixtures import lab, lab_env, lab_process, lab_root_env``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .server import Lab
from .serving import RunningLab, make_pki, serve_in_thread
from .serving import lab_process as _lab_process

HOST = "127.0.0.1"


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """A fresh Lab on 127.0.0.1 and a free port, time_scale 0, API token ``root@pam!nixmox``.

    Yields a RunningLab: ``.pve`` (the Lab, to seed and inspect), ``.url``,
    ``.ca_file``, ``.token_id``, ``.token`` and ``.env`` (the NIXMOX_PVE_*
    variables).
    """
    # A CA and certificate per lab (EC keys take milliseconds): the conftest then needs to import
    # only `lab` and `lab_process`, no helper fixture.
    with fresh_lab(tmp_path_factory.mktemp("lab-pki")) as running:
        yield running


@pytest.fixture
def lab_env(lab: RunningLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunningLab:
    """``lab``, with nixmox in this process pointed at it: the NIXMOX_PVE_* variables set
    and NIXMOX_STATE_DIR an empty ``tmp_path / "state"`` (the run journal goes there)."""
    point_at(lab, monkeypatch, tmp_path / "state")
    return lab


@pytest.fixture
def lab_root_env(lab: RunningLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunningLab:
    """``lab_env``, logged in as root@pam with a password instead of a token: what the keys
    only root@pam may set need (affinity, raw hostpci; no API token passes those checks)."""
    point_at(lab, monkeypatch, tmp_path / "state", root=True)
    return lab


def point_at(
    running: RunningLab,
    monkeypatch: pytest.MonkeyPatch,
    state: Path | None = None,
    *,
    root: bool = False,
) -> None:
    """Set the NIXMOX_PVE_* variables to ``running`` (and NIXMOX_STATE_DIR to ``state``)
    for this test; for a test that starts a lab of its own. ``root``: a root@pam password
    login instead of the lab's API token."""
    for key in {*running.env, *running.root_env}:
        monkeypatch.delenv(key, raising=False)
    for key, value in (running.root_env if root else running.env).items():
        monkeypatch.setenv(key, value)
    if state is not None:
        monkeypatch.setenv("NIXMOX_STATE_DIR", str(state))


@contextmanager
def fresh_lab(directory: Path) -> Iterator[RunningLab]:
    """A fresh Lab on 127.0.0.1 (time_scale 0), its certificate made in ``directory``."""
    pve = Lab(host=HOST, port=0)
    pve.time_scale = 0
    running = serve_in_thread(pve, make_pki(directory, HOST))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def lab_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The standalone lab (``python -m tests.lab --guests``) for the session; yields its env.

    The env is the four NIXMOX_PVE_* variables. State persists between the
    tests that use it. Stopped with SIGTERM and waited on at session end.
    """
    with _lab_process(tmp_path_factory.mktemp("lab-process"), host=HOST, guests=True) as proc:
        yield proc.env
