"""Pure parts of Windows provisioning: Steam's KeyValues files and the step decisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixmox.inventory.model import WindowsSettings
from nixmox.windows import provision_plan as plan
from nixmox.windows.keyvalues import (
    KeyValues,
    KeyValuesError,
    dumps,
    library_of,
    loads,
    parse_manifest,
)
from nixmox.windows.provision_plan import SteamFacts, StepResult

# As Steam writes it (abridged), with a comment and a platform condition added.
RUST_ACF = """\
"AppState"
{
\t"appid"\t\t"252490"
\t"Universe"\t\t"1"
\t"name"\t\t"Rust"
\t"StateFlags"\t\t"4"
\t"installdir"\t\t"Rust"
\t"buildid"\t\t"19254891"
\t// written by Steam
\t"LauncherPath"\t\t"C:\\\\Program Files (x86)\\\\Steam\\\\steam.exe"  [$WIN32]
\t"InstalledDepots"
\t{
\t\t"252494"
\t\t{
\t\t\t"manifest"\t\t"6349238427093840541"
\t\t\t"size"\t\t"31733473279"
\t\t}
\t}
}
"""

LIBRARIES = """\
"libraryfolders"
{
\t"0"
\t{
\t\t"path"\t\t"C:\\\\Program Files (x86)\\\\Steam"
\t\t"apps"
\t\t{
\t\t\t"228980"\t\t"430498753"
\t\t}
\t}
\t"1"
\t{
\t\t"path"\t\t"D:\\\\SteamLibrary"
\t\t"apps"
\t\t{
\t\t\t"252490"\t\t"31733473279"
\t\t}
\t}
}
"""

CLIENT = WindowsSettings(user="gamer", steam=True, rust="client")
SERVER = WindowsSettings(user="gamer", steam=True, rust="server")


# -- KeyValues -------------------------------------------------------------------------------


def test_a_steam_manifest_parses() -> None:
    m = parse_manifest(RUST_ACF)
    assert (m.appid, m.name, m.state_flags, m.installdir, m.buildid) == (
        252490,
        "Rust",
        4,
        "Rust",
        "19254891",
    )
    assert m.fully_installed and m.state() == "fully installed"
    state = loads(RUST_ACF)["AppState"]
    assert isinstance(state, dict)
    assert state["LauncherPath"] == "C:\\Program Files (x86)\\Steam\\steam.exe"


@pytest.mark.parametrize(
    ("flags", "words", "installed"),
    [
        (0, "not installed", False),
        (4, "fully installed", True),
        (6, "update required, fully installed", False),
        (1026, "update required, update started", False),
        (4 | 8192, "fully installed, app running", False),
        (1, "uninstalled", False),
        (4 | 64, "fully installed, shared only", False),
        (1538, "update required, update paused, update started", False),  # 0x602
    ],
)
def test_state_flags_in_words(flags: int, words: str, installed: bool) -> None:
    m = parse_manifest(RUST_ACF.replace('"StateFlags"\t\t"4"', f'"StateFlags"\t\t"{flags}"'))
    assert m.state() == words and m.fully_installed is installed


def test_keys_compare_without_case() -> None:
    m = parse_manifest(
        RUST_ACF.replace('"StateFlags"', '"stateflags"').replace("AppState", "appstate")
    )
    assert m.state_flags == 4


def test_the_library_holding_an_app() -> None:
    assert library_of(LIBRARIES, 252490) == "D:\\SteamLibrary"
    assert library_of(LIBRARIES, 228980) == "C:\\Program Files (x86)\\Steam"
    assert library_of(LIBRARIES, 258550) is None


@pytest.mark.parametrize(
    "text",
    ['"AppState"\n{\n"appid" "1"\n', '"AppState" { "appid" }', '"a" "b" }', '"a" "b', "{ }"],
    ids=["missing }", "key without value", "stray }", "open string", "block without key"],
)
def test_broken_keyvalues_are_refused(text: str) -> None:
    with pytest.raises(KeyValuesError):
        loads(text)


def test_a_manifest_without_appstate_is_refused() -> None:
    with pytest.raises(KeyValuesError, match="AppState"):
        parse_manifest('"Other" { "appid" "1" }')


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
documents: st.SearchStrategy[KeyValues] = st.recursive(
    st.dictionaries(texts, texts, max_size=4),
    lambda children: st.dictionaries(texts, st.one_of(texts, children), max_size=4),
    max_leaves=20,
)


@given(documents)
def test_dumps_then_loads_is_the_identity(doc: KeyValues) -> None:
    assert loads(dumps(doc)) == doc


# -- step sequencing -------------------------------------------------------------------------


def ok(step: str) -> StepResult:
    return StepResult(step, True, False, "")


def failed(step: str) -> StepResult:
    return StepResult(step, False, False, "broken")


def test_every_step_needs_the_precheck() -> None:
    for step in plan.STEPS[1:]:
        assert plan.blocked_by(step, CLIENT, [failed("precheck")]) == "precheck"
    assert plan.blocked_by("precheck", CLIENT, []) is None


def test_the_rust_client_needs_steam_but_the_server_does_not() -> None:
    done = [ok("precheck"), ok("drivers"), failed("steam")]
    assert plan.blocked_by("rust", CLIENT, done) == "steam"
    assert plan.blocked_by("rust", SERVER, done) is None
    assert plan.blocked_by("msi", CLIENT, done) is None
    # Without windows.steam nixmox does not manage Steam: the client check runs on its own.
    assert plan.blocked_by("rust", CLIENT.model_copy(update={"steam": False}), done) is None


def test_a_skipped_step_blocks_its_dependants() -> None:
    done = [ok("precheck"), plan.skipped("steam", "precheck")]
    assert plan.blocked_by("rust", CLIENT, done) == "steam"


def test_exit_code() -> None:
    pending = StepResult("rust", True, False, "install it", pending=True)
    assert plan.exit_code([ok("precheck"), pending]) == 0
    assert plan.exit_code([ok("precheck"), plan.skipped("rust", "steam")]) == 1
    assert plan.exit_code([ok("precheck"), failed("postcheck")]) == 1


# -- decisions -------------------------------------------------------------------------------

STEAM = "C:\\Program Files (x86)\\Steam"


def facts(
    installed: bool = True,
    user: str | None = "WIN11\\gamer",
    logon: str = "Interactive",
    priority: int | None = plan.TASK_PRIORITY,
) -> SteamFacts:
    return SteamFacts(
        installed, STEAM if installed else None, user, logon, f"{STEAM}\\steam.exe", priority
    )


@pytest.mark.parametrize(
    ("found", "actions"),
    [
        (facts(), []),
        (facts(installed=False), ["install", "task"]),
        (facts(user=None), ["task"]),
        (facts(user="SYSTEM", logon="ServiceAccount"), ["task"]),
        (facts(user="NT AUTHORITY\\SYSTEM"), ["task"]),
        (facts(user="someone"), ["task"]),
        (facts(logon="Password"), ["task"]),
        (facts(priority=7), ["task"]),
        (facts(priority=None), ["task"]),
    ],
    ids=[
        "in place",
        "fresh",
        "no task",
        "system",
        "system prefixed",
        "other user",
        "stored password",
        "below-normal priority",
        "priority unknown",
    ],
)
def test_steam_actions(found: SteamFacts, actions: list[str]) -> None:
    assert plan.steam_actions(found, "gamer") == actions


def test_steamcmd_sets_the_install_dir_before_logging_in() -> None:
    argv = plan.steamcmd_argv("C:\\steamcmd", "D:\\rust server")
    assert argv == [
        "C:\\steamcmd\\steamcmd.exe",
        "+force_install_dir",
        "D:\\rust server",
        "+login",
        "anonymous",
        "+app_update",
        "258550",
        "validate",
        "+quit",
    ]


def test_the_rust_client_is_left_to_the_user() -> None:
    missing = plan.rust_client(None, "gamer")
    assert missing.ok and missing.pending and not missing.changed
    assert "steam://install/252490" in missing.detail and "as gamer" in missing.detail
    updating = plan.rust_client(parse_manifest(RUST_ACF.replace('"4"', '"1030"', 1)), "gamer")
    assert updating.pending and "StateFlags 1030" in updating.detail
    assert not plan.rust_client(parse_manifest(RUST_ACF), "gamer").pending


def test_msi_decisions() -> None:
    off = {"functions": [{"name": "RTX 3060", "msi": False}, {"name": "HD Audio", "msi": True}]}
    would = plan.msi(off, check_only=True)
    assert would.changed and not would.reboot and "would enable MSI on RTX 3060" in would.detail
    did = plan.msi({**off, "changed": True}, check_only=False)
    assert did.changed and did.reboot and "reboot needed" in did.detail
    assert not plan.msi({"functions": []}, check_only=False).changed
    assert not plan.msi({"ok": False, "detail": "access denied"}, check_only=False).ok


def test_virtio_drivers() -> None:
    present = {"net": ["netkvm"], "storage": ["vioscsi"], "balloon": []}
    assert plan.drivers({"drivers": present, "agent_service": "Running"}).ok
    stopped = plan.drivers({"drivers": present, "agent_service": "Stopped"})
    assert not stopped.ok and "QEMU-GA service stopped" in stopped.detail
    bare = plan.drivers({"drivers": {}, "agent_service": "Running"})
    assert "no virtio net driver; no virtio storage driver" in bare.detail
    assert "nixmox has no driver media" in bare.detail


def test_postcheck_codes() -> None:
    gpu = {"name": "RTX 3060", "code": 43}
    bad = plan.postcheck([gpu], None, reboot_pending=False)
    assert not bad.ok and "code 43" in bad.detail
    good = plan.postcheck([{**gpu, "code": 0}], ok("rust"), reboot_pending=True)
    assert good.ok and "reboot pending" in good.detail
    assert not plan.postcheck([{**gpu, "code": 0}], failed("rust"), reboot_pending=False).ok


def test_postcheck_leaves_emulated_adapters_out() -> None:
    nvidia = {"name": "RTX 3060", "id": "PCI\\VEN_10DE&DEV_2504&SUBSYS_1\\4&1&0&0008", "code": 0}
    basic = {
        "name": "Microsoft Basic Display Adapter",
        "id": "PCI\\VEN_1234&DEV_1111&SUBSYS_11001AF4&REV_02\\3&267A616A&0&10",
        "code": 22,
    }
    got = plan.postcheck([nvidia, basic], None, reboot_pending=False)
    assert got.ok and got.detail == "RTX 3060: working"
    # A disabled passed-through GPU still fails.
    assert not plan.postcheck([{**nvidia, "code": 22}], None, reboot_pending=False).ok
    assert [plan.emulated(f"PCI\\VEN_{v}&DEV_0001") for v in ("1AF4", "1b36", "10DE")] == [
        True,
        True,
        False,
    ]
