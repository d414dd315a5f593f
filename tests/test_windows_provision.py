"""`nixmox windows provision` against the lab's agent, scripted as a Windows guest."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from nixmox.adapters.journal import Journal
from nixmox.cli.main import run
from nixmox.windows.provision_plan import STEAM_SETUP_URL, STEAMCMD_URL
from nixmox.windows.scripts import GUEST_DIR, POWERSHELL
from tests.lab.serving import RunningLab
from tests.windows_exec import (
    PLANTED,
    PLAYER,
    PROGRAMDATA_CHILD,
    PROTECTED,
    ROOT_CHILD,
    UNSIGNED,
    VALVE_SIGNED,
    decode,
    script_call,
)
from tests.windows_guest import (
    INTEL_IGPU,
    INTEL_ROOT,
    STEAM_EXE,
    STEAMCMD_DIR,
    WindowsGuest,
    manifest,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
VMID = 102
EVIL_SIGNED = {"status": "Valid", "subject": "CN=Evil Games Ltd, O=Evil Games Ltd, C=XX"}
ACTING = {"provision-steam-task", "provision-steam-install"}


@pytest.fixture
def env(lab_env: RunningLab) -> RunningLab:
    """The shared lab environment, seeded with the example's guests."""
    lab_env.pve.add_declared_guests()
    vm = lab_env.pve.guest(VMID)
    assert vm is not None
    vm.status = "running"
    return lab_env


def attach(lab: RunningLab, guest: WindowsGuest) -> WindowsGuest:
    lab.pve.agent_responders.setdefault(VMID, []).append(guest)
    return guest


def provision(
    capsys: pytest.CaptureFixture[str], *args: str, config: Path = EXAMPLE
) -> tuple[int, dict[str, dict[str, Any]]]:
    argv = ["windows", "provision", "--guest", "win11-gaming", "--json", "--config", str(config)]
    code = run([*argv, *args])
    steps = json.loads(capsys.readouterr().out)
    assert [s["step"] for s in steps] == [
        "precheck",
        "drivers",
        "steam",
        "rust",
        "msi",
        "postcheck",
    ]
    return code, {s["step"]: s for s in steps}


def execs(lab: RunningLab) -> list[list[str]]:
    vm = lab.pve.guest(VMID)
    assert vm is not None
    return [list(argv) for _, argv in sorted(vm.agent_execs.items())]


def attached(lab: RunningLab) -> WindowsGuest:
    [guest] = [g for g in lab.pve.agent_responders[VMID] if isinstance(g, WindowsGuest)]
    return guest


def scripts_run(lab: RunningLab) -> list[tuple[str, dict[str, str | bool]]]:
    return [call for argv in execs(lab) if (call := script_call(argv)) is not None]


def with_rust(tmp_path: Path, kind: str) -> Path:
    text = EXAMPLE.read_text()
    assert text.count('\nrust = "client"\n') == 1
    path = tmp_path / "homelab.toml"
    path.write_text(text.replace('\nrust = "client"\n', f'\nrust = "{kind}"\n'))
    return path


def test_an_provisioned_guest_is_left_alone(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    attach(env, WindowsGuest.provisioned())
    code, steps = provision(capsys)
    assert code == 0
    assert not any(s["changed"] for s in steps.values()), steps
    assert all(s["ok"] and not s["pending"] for s in steps.values()), steps
    # Rust found through libraryfolders.vdf in the second library.
    assert "Rust client installed (build 19254891)" in steps["rust"]["detail"]
    assert attached(env).executed == []
    assert not {name for name, _ in scripts_run(env)} & ACTING
    [journal] = Journal(Path(os.environ["NIXMOX_STATE_DIR"])).runs("windows provision")
    assert journal.result == "ok"
    assert journal.summary["guests"][0]["vmid"] == VMID


def test_a_fresh_guest_gets_steam_a_logon_task_for_the_user_and_msi(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest())
    code, steps = provision(capsys)
    assert code == 0, steps
    ran = execs(env)
    calls = scripts_run(env)
    # The installer is downloaded inside the guest under a new name, checked for Valve's
    # signature, then run silently from the wrapper that waits for it alone: never
    # straight through the agent, whose exec the Steam it starts as SYSTEM would hold open.
    assert guest.downloads == [STEAM_SETUP_URL]
    [install] = [params for name, params in calls if name == "provision-steam-install"]
    assert install["Url"] == STEAM_SETUP_URL
    assert install["Installer"].startswith(f"{GUEST_DIR}\\SteamSetup-")
    assert install["Signers"] == "Valve Corp.|Valve Corporation"
    assert guest.executed == [install["Installer"]] and guest.system_steam == []
    assert "stopped steam.exe (pid 4100) left as SYSTEM" in steps["steam"]["detail"]
    # The logon task runs as the inventory's user, interactively, never as SYSTEM, at
    # normal priority.
    [task] = [params for name, params in calls if name == "provision-steam-task"]
    assert task == {"User": "gamer", "TaskName": "nixmox-steam", "SteamExe": STEAM_EXE}
    assert guest.task is not None and guest.task["priority"] == 4
    assert not any("SYSTEM" in " ".join(argv) for argv in ran)
    assert steps["steam"]["changed"] and "logon task nixmox-steam" in steps["steam"]["detail"]
    assert steps["steam"]["detail"].startswith("installed Steam in C:\\Program Files (x86)")
    # Rust's client is the user's to install: a pending step, not a failure.
    assert steps["rust"]["pending"] and steps["rust"]["ok"]
    assert "install Rust" in steps["rust"]["detail"] and "as gamer" in steps["rust"]["detail"]
    assert steps["msi"]["changed"] and steps["msi"]["reboot"]
    assert "reboot pending" in steps["postcheck"]["detail"]
    # The scripts were written into the guest before they ran.
    vm = env.pve.guest(VMID)
    assert vm is not None
    written = {v["file"] for c, v in vm.agent_requests if c == "file-write"}
    assert "C:\\ProgramData\\nixmox\\provision-steam-task.ps1" in written

    # A second run finds everything in place.
    before = len(execs(env))
    code, steps = provision(capsys)
    assert code == 0
    assert not any(s["changed"] for s in steps.values()), steps
    assert guest.executed == [install["Installer"]]
    assert len(execs(env)) > before


def test_the_text_report_is_a_step_table(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    attach(env, WindowsGuest())
    code = run(["windows", "provision", "--guest", "win11-gaming", "--config", str(EXAMPLE)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].split() == ["step", "result", "detail"]
    assert "CHANGED" in out and "PENDING" in out
    assert out.rstrip().endswith("left to the user: rust, postcheck, reboot needed")


def test_a_failed_download_fails_steam_and_skips_rust(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    attach(env, WindowsGuest(download_error="The remote name could not be resolved"))
    code, steps = provision(capsys)
    assert code == 1
    assert not steps["steam"]["ok"]
    assert "SteamSetup.exe download failed" in steps["steam"]["detail"]
    assert "could not be resolved" in steps["steam"]["detail"]
    assert steps["rust"]["skipped"] and "steam step failed" in steps["rust"]["detail"]
    assert attached(env).executed == []
    assert "provision-steam-task" not in {name for name, _ in scripts_run(env)}
    # Steps that do not need Steam still ran.
    assert steps["msi"]["ok"] and steps["postcheck"]["ok"]
    [journal] = Journal(Path(os.environ["NIXMOX_STATE_DIR"])).runs("windows provision")
    assert journal.result == "failed"
    assert journal.summary["guests"][0]["message"].startswith("steam: SteamSetup.exe download")


def test_the_rust_server_is_installed_with_steamcmd(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = with_rust(tmp_path, "server")
    guest = attach(env, WindowsGuest.provisioned())
    code, steps = provision(capsys, config=config)
    assert code == 0, steps
    assert guest.downloads == [STEAMCMD_URL]
    # The fresh steamcmd's first run only updates itself (exit 7): `+quit` takes it.
    update, argv = [a for a in execs(env) if a[0].endswith("steamcmd.exe")]
    assert update == ["C:\\Program Files\\steamcmd\\steamcmd.exe", "+quit"]
    assert argv[0] == f"{STEAMCMD_DIR}\\steamcmd.exe"
    assert argv.index("+force_install_dir") < argv.index("+login")
    assert argv[argv.index("+force_install_dir") + 1] == "C:\\rustserver"
    assert argv[argv.index("+login") + 1] == "anonymous"
    assert argv[argv.index("+app_update") + 1 :] == ["258550", "validate", "+quit"]
    assert steps["rust"]["changed"] and "C:\\rustserver" in steps["rust"]["detail"]
    assert "Rust dedicated server fully installed" in steps["postcheck"]["detail"]

    # Installed: steamcmd does not run again.
    code, steps = provision(capsys, config=config)
    assert code == 0 and not steps["rust"]["changed"]
    assert len([a for a in execs(env) if a[0].endswith("steamcmd.exe")]) == 2


def test_app_update_is_retried_until_the_manifest_says_installed(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    guest = attach(env, WindowsGuest.provisioned())
    guest.app_update_failures = 1  # "state is 0x602 after update job", then fine
    code, steps = provision(capsys, config=with_rust(tmp_path, "server"))
    assert code == 0, steps
    runs = [a for a in execs(env) if a[0].endswith("steamcmd.exe")]
    assert [len(a) > 2 for a in runs] == [False, True, True]
    assert steps["rust"]["detail"].endswith("in C:\\rustserver (attempt 2)")


def test_a_half_installed_server_is_updated_and_a_failing_steamcmd_fails(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = with_rust(tmp_path, "server")
    guest = attach(env, WindowsGuest.provisioned().with_steamcmd())
    path = "C:\\rustserver\\steamapps\\appmanifest_258550.acf"
    guest.files[path] = manifest(258550, "rust_dedicated", 6)
    # steamcmd "finishes" without the manifest changing.
    env.pve.agent_responders[VMID].insert(
        0,
        lambda c, v, argv: (
            {"exited": True, "exitcode": 8, "out-data": "Error! App '258550' state is 0x202\n"}
            if argv and argv[0].endswith("steamcmd.exe")
            else None
        ),
    )
    code, steps = provision(capsys, config=config)
    assert code == 1
    detail = steps["rust"]["detail"]
    assert "steamcmd exited with 8 after 3 attempts" in detail and "update required" in detail
    assert "0x202" in detail
    assert guest.downloads == []
    # Bounded: steamcmd's own update, then three attempts.
    assert len([a for a in execs(env) if a[0].endswith("steamcmd.exe")]) == 4


def test_code_43_fails_the_postcheck(env: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    guest = attach(env, WindowsGuest.provisioned())
    guest.gpu_code = 43
    code, steps = provision(capsys)
    assert code == 1
    assert not steps["postcheck"]["ok"]
    assert "code 43" in steps["postcheck"]["detail"]
    assert all(steps[s]["ok"] for s in ("precheck", "drivers", "steam", "rust", "msi"))


def test_a_disabled_basic_display_adapter_next_to_the_gpu_passes(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # Passthrough with the emulated VGA still there: Windows disables its adapter (code 22).
    guest = attach(env, WindowsGuest.provisioned())
    guest.basic_display_code = 22
    code, steps = provision(capsys)
    assert code == 0, steps
    assert steps["postcheck"]["detail"].startswith("NVIDIA GeForce RTX 3060: working")
    assert "Basic Display" not in steps["postcheck"]["detail"]


def test_a_task_below_normal_priority_is_registered_again(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest.provisioned())
    assert guest.task is not None
    guest.task["priority"] = 7  # as an older nixmox (and the task default) left it
    code, steps = provision(capsys)
    assert code == 0 and steps["steam"]["changed"], steps
    assert guest.task["priority"] == 4


def test_a_user_named_like_the_computer_gets_its_task(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest(computer_name="GAMER"))
    code, steps = provision(capsys)
    assert code == 0, steps
    assert guest.task is not None and guest.task["user"] == "GAMER\\gamer"
    # The second run recognizes its own task.
    code, steps = provision(capsys)
    assert code == 0 and not steps["steam"]["changed"]


def test_msi_for_an_intel_igpu_leaves_the_other_root_bus_devices_alone(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest.provisioned())
    guest.pci = {**INTEL_ROOT}
    guest.msi = {}
    code, steps = provision(capsys)
    assert code == 0, steps
    assert guest.msi == {INTEL_IGPU: True}
    assert steps["msi"]["detail"] == (
        "enabled MSI on Intel(R) UHD Graphics 770: reboot needed to take effect"
    )


def test_non_ascii_names_and_a_bom_survive_the_report(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest.provisioned())
    guest.drivers["net"] = ["Red Hat VirtIO Ethernet Adapter \u2013 Ger\u00e4t"]
    env.pve.agent_responders[VMID].insert(0, _with_bom(guest))
    code, steps = provision(capsys)
    assert code == 0, steps
    assert "Red Hat VirtIO Ethernet Adapter \u2013 Ger\u00e4t" in steps["drivers"]["detail"]


def _with_bom(guest: WindowsGuest) -> Any:
    """Answers as ``guest`` does, with a UTF-8 byte order mark before each script's output."""

    def respond(command: str, values: dict[str, Any], argv: list[str] | None) -> Any:
        answer = guest(command, values, argv)
        if command == "exec-status" and answer and argv and script_call(argv):
            answer = {**answer, "out-data": "\ufeff" + answer["out-data"]}
        return answer

    return respond


def test_a_dry_run_runs_only_the_checks(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    guest = attach(env, WindowsGuest())
    code, steps = provision(capsys, "--dry-run")
    assert code == 0, steps
    assert "would download SteamSetup.exe" in steps["steam"]["detail"]
    assert "would enable MSI" in steps["msi"]["detail"]
    for argv in execs(env):
        call = script_call(argv)
        if call is None:
            decoded = decode(argv)
            assert decoded is not None and decoded[0] == "guest-folder", argv
            continue
        name, params = call
        assert name not in ACTING
        if name in ("provision-msi", "provision-steamcmd"):
            assert params.get("CheckOnly") is True
    assert guest.steam_dir is None and not any(guest.msi.values())
    assert guest.downloads == []
    assert Journal(Path(os.environ["NIXMOX_STATE_DIR"])).runs("windows provision") == []

    attach(env, guest)
    code, steps = provision(capsys, "--dry-run", config=with_rust(tmp_path, "server"))
    assert code == 0 and "would download steamcmd" in steps["rust"]["detail"]
    assert not any(a[0].endswith("steamcmd.exe") for a in execs(env))


def test_missing_virtio_drivers_fail_with_where_to_get_them(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest.provisioned())
    guest.drivers["net"] = []
    code, steps = provision(capsys)
    assert code == 1
    assert "no virtio net driver" in steps["drivers"]["detail"]
    assert "virtio-win ISO" in steps["drivers"]["detail"]


def test_a_stopped_vm_skips_everything(env: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    attach(env, WindowsGuest.provisioned())
    vm = env.pve.guest(VMID)
    assert vm is not None
    vm.status = "stopped"
    code, steps = provision(capsys)
    assert code == 1
    assert "the VM is stopped" in steps["precheck"]["detail"]
    assert all(steps[s]["skipped"] for s in ("drivers", "steam", "rust", "msi", "postcheck"))
    assert vm.agent_requests == []


def test_an_agent_that_does_not_answer_fails_the_precheck(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    vm = env.pve.guest(VMID)
    assert vm is not None
    vm.agent = None  # agent=1 in the config, but nothing answers inside
    code, steps = provision(capsys)
    assert code == 1
    assert "does not answer" in steps["precheck"]["detail"]
    assert steps["drivers"]["skipped"]


def test_a_guest_that_is_not_windows_is_refused(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    vm = env.pve.guest(VMID)
    assert vm is not None
    vm.agent = {"os": {"id": "debian", "pretty-name": "Debian GNU/Linux 13 (trixie)"}}
    code, steps = provision(capsys)
    assert code == 1
    assert "Debian GNU/Linux 13 (trixie), not Windows" in steps["precheck"]["detail"]
    assert not [argv for argv in execs(env) if argv[: len(POWERSHELL)] == POWERSHELL]


def test_a_container_is_refused_in_one_line(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["windows", "provision", "--guest", "nixos-lxc", "--config", str(EXAMPLE)])
    captured = capsys.readouterr()
    assert code != 0
    assert "not a Windows VM" in captured.err and len(captured.err.strip().splitlines()) == 1


# -- what a standard user in the guest may have planted (issue 17) ------------------


def written(lab: RunningLab) -> list[str]:
    vm = lab.pve.guest(VMID)
    assert vm is not None
    return [str(v["file"]) for c, v in vm.agent_requests if c == "file-write"]


@pytest.mark.parametrize(
    ("sddl", "says"),
    [
        # Made by an older nixmox with `mkdir`: Users may create files in it.
        (PROGRAMDATA_CHILD, "lets Users (S-1-5-32-545) write in it"),
        # A user made it first and locked it to look like nixmox's: still theirs.
        (PLANTED, f"is owned by {PLAYER}, not SYSTEM or Administrators"),
    ],
    ids=["inherited", "user-owned"],
)
def test_a_guest_folder_others_could_write_is_refused_before_anything_runs(
    env: RunningLab, capsys: pytest.CaptureFixture[str], sddl: str, says: str
) -> None:
    guest = attach(env, WindowsGuest())
    guest.folders.sddl[GUEST_DIR.lower()] = sddl
    # What its owner left there: an installer an older nixmox would have run as SYSTEM.
    guest.binaries[f"{GUEST_DIR}\\SteamSetup.exe"] = {"status": "NotSigned", "subject": ""}
    code, steps = provision(capsys)
    assert code == 1
    detail = steps["precheck"]["detail"]
    assert says in detail and "refusing" in detail and "C:\\ProgramData\\nixmox" in detail
    assert all(steps[s]["skipped"] for s in ("drivers", "steam", "rust", "msi", "postcheck"))
    assert written(env) == [] and guest.executed == [] and guest.downloads == []
    assert scripts_run(env) == []


def test_something_slipped_into_the_folder_as_it_was_made_is_refused(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest())
    guest.folders.race = ["provision-steam.ps1"]
    code, steps = provision(capsys)
    assert code == 1
    assert "already held provision-steam.ps1" in steps["precheck"]["detail"]
    assert written(env) == [] and guest.executed == []


def test_the_folder_nixmox_creates_is_for_system_and_administrators_only(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest.provisioned())
    code, _ = provision(capsys)
    assert code == 0
    assert guest.folders.sddl[GUEST_DIR.lower()] == PROTECTED
    # Checked again on the next run, and used as it is.
    code, _ = provision(capsys)
    assert code == 0


def test_a_script_changed_after_nixmox_wrote_it_is_not_run(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest.provisioned())
    guest.folders.swapped[f"{GUEST_DIR}\\provision-drivers.ps1"] = "Start-Process evil.exe\n"
    code, steps = provision(capsys)
    assert code == 1
    assert "is not the script nixmox wrote" in steps["drivers"]["detail"]
    assert "provision-drivers" not in guest.ran_scripts and "provision-msi" in guest.ran_scripts
    assert steps["msi"]["ok"]  # the other scripts were what nixmox wrote


@pytest.mark.parametrize(
    "signature",
    [UNSIGNED, {"status": "HashMismatch", "subject": VALVE_SIGNED["subject"]}, EVIL_SIGNED],
    ids=["unsigned", "tampered", "someone-else"],
)
def test_a_steam_installer_not_signed_by_valve_is_never_run(
    env: RunningLab, capsys: pytest.CaptureFixture[str], signature: dict[str, str]
) -> None:
    guest = attach(env, WindowsGuest())
    guest.signatures[STEAM_SETUP_URL] = signature
    code, steps = provision(capsys)
    assert code == 1
    detail = steps["steam"]["detail"]
    assert "is not validly signed by Valve Corp." in detail and "refusing" in detail
    assert f"signature {signature['status']}" in detail
    assert guest.downloads == [STEAM_SETUP_URL] and guest.executed == []
    assert guest.steam_dir is None


def test_each_run_downloads_the_installer_afresh_under_a_new_name(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = attach(env, WindowsGuest(download_error="timed out"))
    provision(capsys)
    guest.download_error = None
    provision(capsys)
    first, second = [p["Installer"] for n, p in scripts_run(env) if n == "provision-steam-install"]
    assert first != second and guest.downloads == [STEAM_SETUP_URL] * 2
    assert guest.executed == [second]


def with_steamcmd_dir(tmp_path: Path, directory: str) -> Path:
    path = with_rust(tmp_path, "server")
    text = path.read_text().replace(
        '\nrust = "server"\n', f"\nrust = \"server\"\nsteamcmd_dir = '{directory}'\n"
    )
    path.write_text(text)
    return path


def test_steamcmd_planted_where_users_can_write_is_never_run(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The old default, C:\steamcmd: any signed-in user could create it first.
    guest = attach(env, WindowsGuest.provisioned())
    guest.folders.sddl["c:\\steamcmd"] = ROOT_CHILD
    guest.binaries["C:\\steamcmd\\steamcmd.exe"] = dict(VALVE_SIGNED)  # swappable at will
    code, steps = provision(capsys, config=with_steamcmd_dir(tmp_path, "C:\\steamcmd"))
    assert code == 1
    detail = steps["rust"]["detail"]
    assert "C:\\steamcmd in the guest lets Authenticated Users (S-1-5-11) write" in detail
    assert "runs steamcmd.exe from it as SYSTEM; refusing" in detail
    assert guest.executed == [] and guest.downloads == []


def test_steamcmd_not_signed_by_valve_is_never_run(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    guest = attach(env, WindowsGuest.provisioned().with_steamcmd())
    guest.binaries[f"{STEAMCMD_DIR}\\steamcmd.exe"] = dict(UNSIGNED)
    code, steps = provision(capsys, config=with_rust(tmp_path, "server"))
    assert code == 1
    assert "steamcmd.exe is not validly signed by Valve Corp." in steps["rust"]["detail"]
    assert guest.executed == []


def test_a_steamcmd_download_not_signed_by_valve_is_not_installed(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    guest = attach(env, WindowsGuest.provisioned())
    guest.signatures[STEAMCMD_URL] = EVIL_SIGNED
    code, steps = provision(capsys, config=with_rust(tmp_path, "server"))
    assert code == 1
    detail = steps["rust"]["detail"]
    assert f"steamcmd.exe from {STEAMCMD_URL} is not validly signed" in detail
    assert "signed by CN=Evil Games Ltd" in detail
    assert guest.executed == [] and f"{STEAMCMD_DIR}\\steamcmd.exe" not in guest.binaries
    # The default folder, created for SYSTEM and Administrators only when steamcmd is fine.
    guest.signatures.clear()
    code, steps = provision(capsys, config=with_rust(tmp_path, "server"))
    assert code == 0, steps
    assert guest.folders.sddl[STEAMCMD_DIR.lower()] == PROTECTED
