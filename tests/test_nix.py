"""The flake and the NixOS module, checked with the real (offline) nix.

nixpkgs cannot be fetched here, so the module is evaluated against a small
stub lib/pkgs/config (option names, defaults, conditions, generated unit
fields; not NixOS's own option types) and the flake is locked and shown with
nixpkgs overridden by a local stub. The real evaluation runs in the flake's
checks (nix/module-check.nix) where nixpkgs exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.peers.nix import NixSandbox
from tests.peers.require import need_binary

pytestmark = pytest.mark.peer

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "nix" / "module.nix"
NIX_FILES = sorted([REPO / "flake.nix", *(REPO / "nix").glob("*.nix")])
STORE = "/nix/store/00000000000000000000000000000000"

# Just enough of nixpkgs' lib and pkgs for nix/module.nix; mkIf and friends
# stay visible as {_type = ...} values that `_resolve` below applies.
HARNESS = """\
{ modulePath, userConfig, container, package }:
let
  lib = rec {
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: mkOption { type = "bool"; default = false; description = name; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    types = {
      bool = "bool"; str = "str"; path = "path"; package = "package";
      listOf = t: "listOf ${t}"; nullOr = t: "nullOr ${t}";
    };
    inherit (builtins) any head mapAttrs concatStringsSep;
    optionalAttrs = cond: attrs: if cond then attrs else { };
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    filterAttrs = pred: set: builtins.listToAttrs (builtins.concatMap
      (n: if pred n set.${n} then [ (nameValuePair n set.${n}) ] else [ ])
      (builtins.attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (builtins.attrNames set);
    recursiveUpdate = a: b: a // builtins.mapAttrs (n: v:
      if builtins.isAttrs v && builtins.isAttrs (a.${n} or null) && (a.${n}._type or null) == null
      then recursiveUpdate a.${n} v else v) b;
  };
  pkgs = {
    formats.toml = { }: {
      type = "toml value";
      generate = name: value: "STORE-${name}";
    };
    callPackage = fn: args: { type = "derivation"; name = "nixmox"; outPath = "STORE-nixmox"; };
    openssh = "STORE-openssh";
  };
  defaultsOf = opts:
    if (opts._type or null) == "option" then (opts.default or null)
    else builtins.mapAttrs (_: defaultsOf) opts;
  evaluated = import modulePath { inherit lib pkgs config; };
  config = {
    boot.isContainer = container;
    services.nixmox = lib.recursiveUpdate (defaultsOf evaluated.options.services.nixmox)
      (userConfig // (if package == "" then { } else { inherit package; }));
  };
in
{ inherit (evaluated) options config; }
""".replace("STORE", STORE)

SETTINGS: dict[str, Any] = {
    "timezone": "UTC",
    "zfs": {"command": ["ssh", "root@pve1.home.arpa", "zfs"]},
    "nodes": [{"name": "pve1"}],
    "snapshots": {"datasets": [{"dataset": "rpool/data", "policy": "standard"}]},
    "backups": {"storage": "backup"},
    "guests": [{"name": "web", "vmid": 100, "kind": "lxc", "node": "pve1"}],
}

# Every job the module schedules, by its option name under services.nixmox.
JOBS = (
    "snapshot",
    "backup",
    "backupVerify",
    "hostUpdate",
    "nixosUpdate",
    "windowsUpdate",
    "poolScrub",
    "poolTrim",
    "poolCheck",
)

_ABSENT = object()


def _resolve(value: Any) -> Any:
    """Apply the stub's mkIf/mkDefault markers the way the module system would."""
    if isinstance(value, dict):
        kind = value.get("_type")
        if kind == "if":
            return _resolve(value["content"]) if value["condition"] else _ABSENT
        if kind == "override":
            return _resolve(value["content"])
        resolved = {k: _resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _ABSENT}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


@pytest.fixture
def evaluate(nix_sandbox: NixSandbox, tmp_path: Path) -> Any:
    harness = tmp_path / "harness.nix"
    harness.write_text(HARNESS)

    def run(
        user: dict[str, Any], *, container: bool = False, package: str | None = None
    ) -> dict[str, Any]:
        proc = nix_sandbox.instantiate(
            "--eval", "--strict", "--json", str(harness),
            "--arg", "modulePath", str(MODULE),
            "--arg", "container", "true" if container else "false",
            "--argstr", "package", package or "",
            "--arg", "userConfig", f"builtins.fromJSON {json.dumps(json.dumps(user))}",
        )  # fmt: skip
        return dict(json.loads(proc.stdout))

    def wrapped(
        user: dict[str, Any], *, container: bool = False, package: str | None = None
    ) -> dict[str, Any]:
        result = run(user, container=container, package=package)
        config = _resolve(result["config"])
        return {"options": result["options"], "config": {} if config is _ABSENT else config}

    return wrapped


def _failing(config: dict[str, Any]) -> list[str]:
    return [a["message"] for a in config.get("assertions", []) if not a["assertion"]]


# -- the files parse --------------------------------------------------------------


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: p.name)
def test_nix_file_parses(nix_sandbox: NixSandbox, path: Path) -> None:
    nix_sandbox.instantiate("--parse", str(path))


# -- the module against the stub ---------------------------------------------------


def test_disabled_module_configures_nothing(evaluate: Any) -> None:
    result = evaluate({})
    assert result["config"] == {}
    options = result["options"]["services"]["nixmox"]
    assert options["enable"]["default"] is False


def test_defaults(evaluate: Any) -> None:
    result = evaluate({"enable": True, "settings": SETTINGS, "snapshot": {"enable": True}})
    options = result["options"]["services"]["nixmox"]
    assert {j: options[j]["dates"]["default"] for j in JOBS} == {
        "snapshot": "hourly",
        "backup": "*-*-* 02:30:00",
        "backupVerify": "Sun *-*-* 06:00:00",
        "hostUpdate": "Sat *-*-* 04:00:00",
        "nixosUpdate": "*-*-* 03:30:00",
        "windowsUpdate": "Wed *-*-* 05:00:00",
        "poolScrub": "Sun *-*-1..7 01:00:00",
        "poolTrim": "Sat *-*-* 01:00:00",
        "poolCheck": "*-*-* 07:00:00",
    }
    for job in JOBS:
        assert options[job]["enable"]["default"] is False
        assert options[job]["persistent"]["default"] is True
        assert options[job]["randomizedDelaySec"]["default"] == "0"
        assert options[job]["fixedRandomDelay"]["default"] is False
    for name in ("configFile", "tokenFile", "environmentFile"):
        assert options[name]["default"] is None

    config = result["config"]
    assert _failing(config) == []
    assert set(config["systemd"]["services"]) == {"nixmox-snapshot", "nixmox-failed@"}
    assert set(config["systemd"]["timers"]) == {"nixmox-snapshot"}
    assert config["environment"]["systemPackages"] == [f"{STORE}-nixmox"]
    toml = f"{STORE}-nixmox.toml"
    assert config["environment"]["etc"] == {"nixmox/nixmox.toml": {"source": toml}}
    assert config["systemd"]["timers"]["nixmox-snapshot"] == {
        "description": "nixmox: take and prune ZFS snapshots on schedule",
        "wantedBy": ["timers.target"],
        "timerConfig": {
            "OnCalendar": "hourly",
            "Persistent": True,
            "RandomizedDelaySec": "0",
            "FixedRandomDelay": False,
        },
    }


def test_generated_service_fields(evaluate: Any) -> None:
    config = evaluate(
        {
            "enable": True,
            "settings": SETTINGS,
            "tokenFile": "/run/secrets/pve-token",
            "snapshot": {"enable": True},
            "backup": {
                "enable": True,
                "dates": "daily",
                "randomizedDelaySec": "10min",
                "fixedRandomDelay": True,
                "persistent": False,
                "timeout": "1h",
            },
        }
    )["config"]
    services = config["systemd"]["services"]
    backup, snapshot = services["nixmox-backup"], services["nixmox-snapshot"]
    toml = f"{STORE}-nixmox.toml"
    assert (
        backup["serviceConfig"]["ExecStart"] == f"{STORE}-nixmox/bin/nixmox --config {toml} backup"
    )
    assert backup["serviceConfig"]["Type"] == "oneshot"
    assert backup["serviceConfig"]["TimeoutStartSec"] == "1h"
    assert snapshot["serviceConfig"]["TimeoutStartSec"] == "15min"
    assert backup["restartIfChanged"] is False
    assert backup["unitConfig"] == {"X-StopOnRemoval": False}
    assert backup["onFailure"] == ["nixmox-failed@%n.service"]
    assert backup["after"] == backup["wants"] == ["network-online.target"]
    assert backup["environment"] == {"NIXMOX_STATE_DIR": "/var/lib/nixmox"}
    # The token as a credential, for the jobs that use the API only.
    assert backup["serviceConfig"]["LoadCredential"] == ["nixmox-pve-token:/run/secrets/pve-token"]
    assert "LoadCredential" not in snapshot["serviceConfig"]
    for unit in (backup, snapshot):
        sandbox = unit["serviceConfig"]
        assert sandbox["ProtectSystem"] == "strict" and sandbox["PrivateTmp"] is True
        assert sandbox["NoNewPrivileges"] is True and sandbox["StateDirectory"] == "nixmox"
        assert sandbox["ProtectKernelTunables"] is True
    assert "RestrictAddressFamilies" not in snapshot["serviceConfig"]
    assert config["systemd"]["timers"]["nixmox-backup"]["timerConfig"] == {
        "OnCalendar": "daily",
        "Persistent": False,
        "RandomizedDelaySec": "10min",
        "FixedRandomDelay": True,
    }
    failed = services["nixmox-failed@"]["serviceConfig"]
    assert failed["ExecStart"] == f"{STORE}-nixmox/bin/nixmox --config {toml} unit-failed %i"


def test_config_file_instead_of_settings(evaluate: Any) -> None:
    config = evaluate(
        {"enable": True, "configFile": "/etc/lab.toml", "hostUpdate": {"enable": True}}
    )["config"]
    assert _failing(config) == []
    # No /etc/nixmox link: the file is the user's, wherever it is.
    assert "etc" not in config["environment"]
    update = config["systemd"]["services"]["nixmox-update-host"]["serviceConfig"]
    assert update["ExecStart"].endswith("--config /etc/lab.toml update host")
    # apt rewrites the system: no read-only root for a host update.
    assert "ProtectSystem" not in update and "NoNewPrivileges" not in update


@pytest.mark.parametrize(
    ("user", "container", "expected"),
    [
        ({}, False, "exactly one of settings and configFile"),
        ({"settings": SETTINGS, "configFile": "/etc/x.toml"}, False, "exactly one of"),
        (
            {"settings": {"timezone": "UTC"}, "backup": {"enable": True}},
            False,
            "services.nixmox.backup: the job needs [backups]",
        ),
        (
            {"settings": SETTINGS, "hostUpdate": {"enable": True}},
            True,
            "a container cannot update (and reboot) the host",
        ),
        (
            {"settings": {**SETTINGS, "zfs": {"command": ["zfs"]}}, "snapshot": {"enable": True}},
            True,
            "a container has no /dev/zfs",
        ),
    ],
    ids=["neither", "both", "missing-section", "host-update-in-container", "zfs-in-container"],
)
def test_assertions_fire(
    evaluate: Any, user: dict[str, Any], container: bool, expected: str
) -> None:
    failing = _failing(evaluate({"enable": True, **user}, container=container)["config"])
    assert len(failing) == 1 and expected in failing[0], failing


def test_container_mode(evaluate: Any) -> None:
    user = {
        "enable": True,
        "settings": SETTINGS,
        "snapshot": {"enable": True},
        "nixosUpdate": {"enable": True},
    }
    config = evaluate(user, container=True)["config"]
    assert _failing(config) == []
    service = config["systemd"]["services"]["nixmox-update-nixos"]["serviceConfig"]
    assert service["ProtectSystem"] == "strict" and service["PrivateTmp"] is True
    # LXC owns /proc/sys, /sys and the cgroup mounts in a container.
    for key in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups"):
        assert key not in service


def test_jobs_may_write_the_metrics_textfile(evaluate: Any) -> None:
    metrics = {**SETTINGS, "metrics": {"textfile": "/var/lib/node-exporter/nixmox.prom"}}
    user = {"enable": True, "snapshot": {"enable": True}, "hostUpdate": {"enable": True}}
    services = evaluate({**user, "settings": metrics})["config"]["systemd"]["services"]
    # ProtectSystem=strict makes / read-only: the textfile's directory is named writable.
    assert services["nixmox-snapshot"]["serviceConfig"]["ReadWritePaths"] == [
        "-/var/lib/node-exporter"
    ]
    # The host job runs without ProtectSystem: nothing to open.
    assert "ReadWritePaths" not in services["nixmox-update-host"]["serviceConfig"]
    without = evaluate({**user, "settings": SETTINGS})["config"]["systemd"]["services"]
    assert "ReadWritePaths" not in without["nixmox-snapshot"]["serviceConfig"]
    # A configFile the evaluation cannot read: the directory is an option.
    given = evaluate({**user, "configFile": "/etc/nixmox.toml", "metricsDir": "/srv/metrics"})
    snapshot = given["config"]["systemd"]["services"]["nixmox-snapshot"]["serviceConfig"]
    assert snapshot["ReadWritePaths"] == ["-/srv/metrics"]


@pytest.mark.parametrize(
    ("inventory", "viaPct", "strict"),
    [
        ({"settings": SETTINGS}, None, True),
        (
            {"settings": {**SETTINGS, "guests": [{"name": "web", "update": {"via": "pct"}}]}},
            None,
            False,
        ),
        # With a string configFile the module cannot see the guests: the sandbox that works.
        ({"configFile": "/etc/nixmox.toml"}, None, False),
        ({"configFile": "/etc/nixmox.toml"}, False, True),
    ],
    ids=["settings", "settings-pct", "config-file", "config-file-no-pct"],
)
def test_the_update_sandbox_follows_pct_use(
    evaluate: Any, inventory: dict[str, Any], viaPct: bool | None, strict: bool
) -> None:
    update: dict[str, Any] = {"enable": True}
    if viaPct is not None:
        update["viaPct"] = viaPct
    config = evaluate({"enable": True, **inventory, "nixosUpdate": update})["config"]
    service = config["systemd"]["services"]["nixmox-update-nixos"]["serviceConfig"]
    assert ("ProtectSystem" in service) is strict
    assert service["PrivateTmp"] is True


def _ini(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [("true" if v else "false") if isinstance(v, bool) else str(v) for v in values]


def _unit_text(unit: dict[str, Any], kind: str) -> str:
    """The unit file NixOS would write, for the keys the module sets."""
    sections: dict[str, list[tuple[str, str]]] = {"Unit": [], kind: [], "Install": []}
    sections["Unit"].append(("Description", unit["description"]))
    for key, name in (("after", "After"), ("wants", "Wants"), ("onFailure", "OnFailure")):
        sections["Unit"] += [(name, v) for v in unit.get(key, [])]
    for key, value in unit.get("unitConfig", {}).items():
        sections["Unit"] += [(key, v) for v in _ini(value)]
    for key, value in unit.get("environment", {}).items():
        sections[kind].append(("Environment", f'"{key}={value}"'))
    for key, value in unit.get("serviceConfig", unit.get("timerConfig", {})).items():
        sections[kind] += [(key, v) for v in _ini(value)]
    sections["Install"] += [("WantedBy", v) for v in unit.get("wantedBy", [])]
    return "".join(
        f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in entries) + "\n"
        for name, entries in sections.items()
        if entries
    )


def test_module_units_verify(evaluate: Any, tmp_path: Path) -> None:
    analyze = need_binary("systemd-analyze", "systemd")
    package = tmp_path / "pkg"
    (package / "bin").mkdir(parents=True)
    (package / "bin" / "nixmox").write_text("#!/bin/sh\nexit 0\n")
    (package / "bin" / "nixmox").chmod(0o755)
    user: dict[str, Any] = {
        "enable": True,
        "configFile": str(tmp_path / "nixmox.toml"),
        "tokenFile": "/run/secrets/pve-token",
        **{job: {"enable": True, "randomizedDelaySec": "5min"} for job in JOBS},
    }
    config = evaluate(user, package=str(package))["config"]
    out = tmp_path / "units"
    out.mkdir()
    for kind, units in (("Service", "services"), ("Timer", "timers")):
        for name, unit in config["systemd"][units].items():
            (out / f"{name}.{kind.lower()}").write_text(_unit_text(unit, kind))
    files = sorted(str(p) for p in out.iterdir())
    assert len(files) == 19
    proc = subprocess.run(
        [analyze, "verify", "--man=no", *files], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr


# -- the flake, with nixpkgs stubbed ---------------------------------------------

# nixpkgs for `nix flake lock/show`: lib functions the flake calls and pkgs
# whose every package is a trivial derivation (never built).
STUB_NIXPKGS = """\
{
  description = "nixmox test stub for nixpkgs (flake outputs only)";
  outputs = { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      pythonPackages = genAttrs [
        "typer" "pydantic" "rich" "proxmoxer" "requests" "tomlkit" "prometheus-client"
        "apprise" "pytest" "hypothesis" "mypy" "types-requests" "jsonschema" "ruff"
      ] (n: n) // { callPackage = path: args: baseNameOf path; };
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
      pkgsFor = system:
        let drv = name: derivation { inherit name system; builder = "/bin/sh"; };
        in {
          callPackage = fn: args: drv "nixmox-stub";
          writeShellScript = name: text: drv name;
          mkShell = args: drv "nixmox-shell" // { inherit (args) packages; };
          # Each Python package as its nixpkgs attribute name (a missing name fails).
          python3.withPackages = f: drv "python3-env" // { pythonPackages = f pythonPackages; };
          ruff = drv "ruff"; git = drv "git"; nix = drv "nix"; systemd = drv "systemd";
          openssh = drv "openssh"; libfaketime = drv "libfaketime";
          runCommand = name: env: script: drv name;
        };
    in {
      lib = {
        inherit genAttrs;
        mapAttrs = builtins.mapAttrs;
        escapeShellArgs = builtins.concatStringsSep " ";
        nixosSystem = args: throw "the stub has no NixOS";
        version = "stub";
      };
      legacyPackages = genAttrs systems pkgsFor;
    };
}
"""


@pytest.fixture
def flake_copy(tmp_path: Path) -> Path:
    """The repository's flake and what it reads, outside git (a path: flake)."""
    copy = tmp_path / "nixmox"
    copy.mkdir()
    shutil.copy(REPO / "flake.nix", copy / "flake.nix")
    shutil.copytree(REPO / "nix", copy / "nix")
    shutil.copytree(REPO / "templates", copy / "templates")
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    return copy


@pytest.fixture
def stub_nixpkgs(tmp_path: Path) -> Path:
    stub = tmp_path / "stub-nixpkgs"
    stub.mkdir()
    (stub / "flake.nix").write_text(STUB_NIXPKGS)
    return stub


def test_flake_locks_and_shows_offline_with_stub_nixpkgs(
    nix_sandbox: NixSandbox, flake_copy: Path, stub_nixpkgs: Path
) -> None:
    stub = stub_nixpkgs
    override = ["--override-input", "nixpkgs", f"path:{stub}"]
    nix_sandbox.nix("flake", "lock", f"path:{flake_copy}", *override)
    lock = json.loads((flake_copy / "flake.lock").read_text())
    assert lock["nodes"]["nixpkgs"]["original"] == {
        "owner": "NixOS",
        "ref": "nixos-25.05",
        "repo": "nixpkgs",
        "type": "github",
    }
    assert lock["nodes"]["nixpkgs"]["locked"]["type"] == "path"

    shown = json.loads(nix_sandbox.nix("flake", "show", "--json", f"path:{flake_copy}").stdout)
    system = shown["packages"]["x86_64-linux"]
    assert system["default"]["name"] == "nixmox-stub"
    apps = shown["apps"]["x86_64-linux"]
    assert set(apps) == {
        "default",
        "nixmox",
        "snapshot",
        "backup",
        "backup-verify",
        "update-host",
        "update-nixos",
        "update-windows",
    }
    assert all(app["type"] == "app" for app in apps.values())
    assert set(shown["devShells"]["x86_64-linux"]) == {"default"}
    assert set(shown["nixosModules"]) == {"default", "nixmox", "guest"}
    assert set(shown["templates"]) == {"nixos-lxc", "nixos-lxc-docker", "nixos-vm"}
    assert set(shown["checks"]["x86_64-linux"]) == {"tests", "module-eval"}


def test_the_module_output_is_the_module_file(
    nix_sandbox: NixSandbox, flake_copy: Path, stub_nixpkgs: Path
) -> None:
    override = ["--override-input", "nixpkgs", f"path:{stub_nixpkgs}"]
    out = nix_sandbox.nix(
        "eval", "--json", f"path:{flake_copy}#nixosModules.default", *override,
        "--apply", "m: builtins.functionArgs (import m)",
    ).stdout  # fmt: skip
    # A NixOS module: a function of the module arguments (plus `...`).
    assert json.loads(out) == {"config": False, "lib": False, "pkgs": False}


# -- the package against pyproject.toml ---------------------------------------------

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    """A requirement's distribution name as nixpkgs' attribute (PEP 503 normalised)."""
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found is not None, requirement
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


RUNTIME = sorted(_name(r) for r in PYPROJECT["project"]["dependencies"])

PACKAGE_HARNESS = """\
{ packagePath, names }:
let
  lib = {
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    fileset = { toSource = args: "source"; unions = xs: xs; };
    licenses.mit = "mit";
    platforms.linux = [ "x86_64-linux" ];
  };
  # Only the names given exist: one package.nix names beyond them fails to evaluate.
  python3Packages = builtins.listToAttrs (map (n: { name = n; value = n; }) names)
    // { buildPythonApplication = attrs: attrs; };
in
import packagePath { inherit lib python3Packages; }
"""


def test_the_package_depends_on_what_pyproject_requires(
    nix_sandbox: NixSandbox, tmp_path: Path
) -> None:
    # nixpkgs' runtime-deps check fails the build of a wheel whose Requires-Dist
    # is not installed: package.nix must list every [project.dependencies] entry.
    harness = tmp_path / "package-harness.nix"
    harness.write_text(PACKAGE_HARNESS)
    build = sorted(_name(r) for r in PYPROJECT["build-system"]["requires"])
    proc = nix_sandbox.instantiate(
        "--eval", "--strict", "--json", str(harness),
        "--arg", "packagePath", str(REPO / "nix" / "package.nix"),
        "--arg", "names", "[ " + " ".join(f'"{n}"' for n in RUNTIME + build) + " ]",
    )  # fmt: skip
    package = json.loads(proc.stdout)
    assert sorted(package["dependencies"]) == RUNTIME
    assert sorted(package["build-system"]) == build
    assert package["version"] == PYPROJECT["project"]["version"]


def test_the_dev_shell_has_the_runtime_dependencies(
    nix_sandbox: NixSandbox, flake_copy: Path, stub_nixpkgs: Path
) -> None:
    out = nix_sandbox.nix(
        "eval", "--json", f"path:{flake_copy}#devShells.x86_64-linux.default.packages",
        "--override-input", "nixpkgs", f"path:{stub_nixpkgs}",
        "--apply", "ps: (builtins.head ps).pythonPackages",
    ).stdout  # fmt: skip
    python = set(json.loads(out))
    dev = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    # ruff and prometheus-pve-exporter come from pkgs; fakepve from nix/fakepve.nix.
    assert set(RUNTIME) | dev - {"ruff", "fakepve", "prometheus-pve-exporter"} <= python
    assert "fakepve.nix" in python


def test_the_license_form_suits_the_setuptools_floor() -> None:
    # A bare SPDX string needs setuptools >= 77 (PEP 639); older ones, which many
    # nixpkgs releases ship, refuse it. The table form works everywhere.
    floor = next(r for r in PYPROJECT["build-system"]["requires"] if _name(r) == "setuptools")
    found = re.search(r">=\s*(\d+)", floor)
    assert found is not None
    license_ = PYPROJECT["project"]["license"]
    assert isinstance(license_, dict) or int(found.group(1)) >= 77, (floor, license_)
