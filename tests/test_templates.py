"""NixOS templates: the flakes and the guest profile with the real (offline) nix,
`template build` with a recording nix stand-in and with the real nix 2.8,
`template upload` against the lab (an LXC tarball through PVE's upload API; a
VM archive over SSH to the real sshd, then restored as a VM template).

nixpkgs cannot be fetched here: the profile and the configurations are
evaluated against a stub lib/pkgs/config (option names, defaults, conditions),
and the template flakes are locked, evaluated and built with nixpkgs replaced
by a stub whose ``lib.nixosSystem`` sets ``system.build`` the way nixpkgs does:
the Proxmox image modules set ``system.build.image`` (25.05 on), and then
``image/images.nix`` leaves ``system.build.images`` (what ``nixos-rebuild
build-image`` offers) undefined. Building a real image needs nixpkgs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from nixmox.cli.main import run
from nixmox.core.errors import ConfigError
from nixmox.inventory.load import load_inventory
from nixmox.templates import build as template_build
from tests.lab.serving import RunningLab
from tests.peers.nix import NixSandbox
from tests.peers.require import need_binary, need_root
from tests.peers.sshd import Sshd
from tests.test_nix import _ABSENT, _resolve

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "homelab.toml"
KINDS = ("nixos-lxc", "nixos-lxc-docker", "nixos-vm")
TEMPLATE_NIX = sorted((REPO / "templates").rglob("*.nix"))
PROFILE = REPO / "templates" / "profile" / "nixmox-guest.nix"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly0000000000000000000 nixmox@test"


# -- the files parse ---------------------------------------------------------------


def test_every_kind_the_command_offers_has_its_files() -> None:
    """`nixmox template build KIND` finds a flake for every kind it accepts (and the
    parse test below covers each of them)."""
    for kind in template_build.KINDS:
        for name in ("flake.nix", "configuration.nix"):
            assert REPO / "templates" / kind / name in TEMPLATE_NIX
    assert PROFILE in TEMPLATE_NIX


@pytest.mark.peer
@pytest.mark.parametrize("path", TEMPLATE_NIX, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_template_file_parses(nix_sandbox: NixSandbox, path: Path) -> None:
    nix_sandbox.instantiate("--parse", str(path))


# -- the guest profile and the configurations against a stub ------------------------

STUB_LIB = """\
  lib = rec {
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: mkOption { type = "bool"; default = false; description = name; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkDefault = content: { _type = "override"; priority = 1000; inherit content; };
    mkRemovedOptionModule = path: message: { removed = path; inherit message; };
    types = {
      bool = "bool"; str = "str"; path = "path";
      listOf = t: "listOf ${t}"; nullOr = t: "nullOr ${t}";
    };
  };
"""

PROFILE_HARNESS = (
    """\
{ modulePath, userConfig, container }:
let
"""
    + STUB_LIB
    + """\
  pkgs = { git = "STORE-git"; };
  defaultsOf = opts:
    if (opts._type or null) == "option" then (opts.default or null)
    else builtins.mapAttrs (_: defaultsOf) opts;
  evaluated = import modulePath { inherit lib pkgs config; };
  guest = defaultsOf evaluated.options.nixmox.guest;
  config = {
    boot.isContainer = container;
    nixmox.guest = guest // userConfig // {
      selfUpdate = guest.selfUpdate // (userConfig.selfUpdate or { });
    };
  };
in
{ inherit (evaluated) options config imports; }
"""
)

CONFIG_HARNESS = (
    """\
{ path }:
let
"""
    + STUB_LIB
    + """\
in
import path { inherit lib; config = { }; pkgs = { }; modulesPath = "/MODULES"; }
"""
)


@pytest.fixture
def profile(nix_sandbox: NixSandbox, tmp_path: Path) -> Any:
    harness = tmp_path / "profile-harness.nix"
    harness.write_text(PROFILE_HARNESS)

    def evaluate(user: dict[str, Any], *, container: bool = False) -> dict[str, Any]:
        proc = nix_sandbox.instantiate(
            "--eval", "--strict", "--json", str(harness),
            "--arg", "modulePath", str(PROFILE),
            "--arg", "container", "true" if container else "false",
            "--arg", "userConfig", f"builtins.fromJSON {json.dumps(json.dumps(user))}",
        )  # fmt: skip
        result = json.loads(proc.stdout)
        return {
            "options": result["options"],
            "config": _resolve(result["config"]),
            "imports": result["imports"],
        }

    return evaluate


def _failing(config: dict[str, Any]) -> list[str]:
    return [a["message"] for a in config.get("assertions", []) if not a["assertion"]]


@pytest.mark.peer
def test_profile_defaults_and_ssh(profile: Any) -> None:
    result = profile({"authorizedKeys": [KEY]})
    options = result["options"]["nixmox"]["guest"]
    assert options["enable"]["default"] is True
    # nixmox logs in as root only: setting the old `user` option says so.
    assert "user" not in options
    [removed] = result["imports"]
    assert removed["removed"] == ["nixmox", "guest", "user"]
    assert 'update.ssh = "root@GUEST"' in removed["message"]
    assert options["selfUpdate"]["enable"]["default"] is False
    config = result["config"]
    assert _failing(config) == []
    ssh = config["services"]["openssh"]
    assert ssh["enable"] is True
    assert ssh["settings"] == {
        "PasswordAuthentication": False,
        "KbdInteractiveAuthentication": False,
        "PermitRootLogin": "prohibit-password",
    }
    assert config["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == [KEY]
    # What the update job needs on the guest: flakes, git; no self-update unless asked.
    assert config["nix"]["settings"]["experimental-features"] == ["nix-command", "flakes"]
    assert "services.nixmox" not in json.dumps(config) and "nixmox" not in config["services"]
    # A VM keeps sys-kernel-debug.mount; only a container suppresses it.
    assert "suppressedSystemUnits" not in config["systemd"]


@pytest.mark.peer
def test_profile_without_keys_fails_its_assertion(profile: Any) -> None:
    failing = _failing(profile({})["config"])
    assert len(failing) == 1 and "authorizedKeys is empty" in failing[0]


@pytest.mark.peer
def test_profile_self_update_uses_services_nixmox(profile: Any) -> None:
    config = profile(
        {"authorizedKeys": [KEY], "selfUpdate": {"enable": True, "dates": "daily"}},
        container=True,
    )["config"]
    assert config["services"]["nixmox"] == {
        "enable": True,
        "nixosUpdate": {"enable": True, "dates": "daily", "randomizedDelaySec": "30min"},
    }
    assert config["services"]["openssh"]["settings"]["PermitRootLogin"] == "prohibit-password"
    assert config["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == [KEY]
    assert config["systemd"]["suppressedSystemUnits"] == ["sys-kernel-debug.mount"]


@pytest.mark.peer
def test_disabled_profile_sets_nothing(profile: Any) -> None:
    # No keys either, and still no failing assertion: the whole config is off.
    assert profile({"enable": False})["config"] is _ABSENT


@pytest.fixture
def configuration(nix_sandbox: NixSandbox, tmp_path: Path) -> Any:
    harness = tmp_path / "config-harness.nix"
    harness.write_text(CONFIG_HARNESS)

    def evaluate(kind: str) -> dict[str, Any]:
        path = REPO / "templates" / kind / "configuration.nix"
        proc = nix_sandbox.instantiate(
            "--eval", "--strict", "--json", str(harness), "--arg", "path", str(path)
        )
        return dict(_resolve(json.loads(proc.stdout)))

    return evaluate


@pytest.mark.peer
@pytest.mark.parametrize("kind", ["nixos-lxc", "nixos-lxc-docker"])
def test_lxc_configurations(configuration: Any, kind: str) -> None:
    config = configuration(kind)
    assert config["imports"] == ["/MODULES/virtualisation/proxmox-lxc.nix"]
    # Unprivileged, and Proxmox writes the network and the hostname.
    assert config["proxmoxLXC"] == {
        "enable": True,
        "privileged": False,
        "manageNetwork": False,
        "manageHostName": False,
    }
    assert config["system"]["stateVersion"] == "25.05"
    docker = config.get("virtualisation", {}).get("docker", {})
    assert docker.get("enable", False) is (kind == "nixos-lxc-docker")


@pytest.mark.peer
def test_vm_configuration(configuration: Any) -> None:
    config = configuration("nixos-vm")
    assert config["imports"] == ["/MODULES/virtualisation/proxmox-image.nix"]
    qemu = config["proxmox"]["qemuConf"]
    assert (qemu["cores"], qemu["memory"], qemu["bios"], qemu["agent"]) == (
        2,
        2048,
        "seabios",
        True,
    )
    assert qemu["net0"].startswith("virtio=") and "bridge=vmbr0" in qemu["net0"]
    assert config["proxmox"]["cloudInit"] == {"enable": True, "defaultStorage": "vm-disks"}
    assert config["services"]["qemuGuest"]["enable"] is True
    assert config["services"]["cloud-init"]["enable"] is True
    assert config["boot"]["growPartition"] is True


# -- the template flakes, locked and evaluated offline ---------------------------------

# nixpkgs for the template flakes. nixosSystem hands back what it was given,
# plus config.system.build as nixpkgs makes it from the image modules the
# configuration imports: proxmox-lxc.nix sets `tarball`, proxmox-image.nix
# `VMA`, and (25.05 on) both set `image`; image/images.nix defines `images`
# only while `image` is unset. The images are real derivations (the VM one
# requires the kvm system feature, as make-disk-image does).
STUB_NIXPKGS = """\
{
  outputs = { self }: {
    lib = {
      nixosSystem = args:
        let
          inherit (args) system;
          moduleArgs = { inherit (self) lib; config = { }; pkgs = { }; modulesPath = "/MODULES"; };
          load = m:
            let v = if builtins.isAttrs m || builtins.isFunction m then m else import m;
            in if builtins.isFunction v then v moduleArgs else v;
          imported = builtins.concatMap (m: map toString ((load m).imports or [ ])) args.modules;
          has = name: builtins.any (p: baseNameOf p == name) imported;
          image = name: dir: file: features: derivation {
            inherit name system;
            builder = "/bin/sh";
            PATH = "/usr/bin:/bin";
            args = [ "-c" "mkdir -p $out/${dir} && echo ${name} > $out/${dir}/${file}" ];
            requiredSystemFeatures = features;
          };
          tarball = image "tarball" "tarball" "nixos-system-${system}.tar.xz" [ ];
          vma = image "proxmox-nixos-vm" "." "vzdump-qemu-nixos-vm.vma.zst" [ "kvm" ];
          set = (if has "proxmox-lxc.nix" then { inherit tarball; image = tarball; } else { })
            // (if has "proxmox-image.nix" then { VMA = vma; image = vma; } else { });
          images = if set ? image then { }
            else { images = { proxmox = vma; proxmox-lxc = tarball; }; };
        in
        { inherit system; modules = args.modules; config.system.build = set // images; };
      optionals = cond: xs: if cond then xs else [ ];
      splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
      mapAttrs = builtins.mapAttrs;
      escapeShellArgs = builtins.concatStringsSep " ";
      mkDefault = x: x;
      version = "stub";
    };
    legacyPackages = { };
  };
}
"""


@pytest.fixture
def flakes(tmp_path: Path) -> dict[str, Path]:
    """Copies: the stub nixpkgs, the nixmox flake (what templates use), the templates."""
    stub = tmp_path / "nixpkgs"
    stub.mkdir()
    (stub / "flake.nix").write_text(STUB_NIXPKGS)
    root = tmp_path / "nixmox"
    root.mkdir()
    shutil.copy(REPO / "flake.nix", root / "flake.nix")
    shutil.copytree(REPO / "nix", root / "nix")
    shutil.copytree(REPO / "templates", root / "templates")
    return {"nixpkgs": stub, "nixmox": root}


@pytest.mark.peer
@pytest.mark.parametrize("kind", KINDS)
def test_template_flake_locks_and_evaluates_offline(
    nix_sandbox: NixSandbox, flakes: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    # The way `template build` stages it: a copy with the keys next to flake.nix.
    staged = template_build.stage(
        REPO / "templates" / kind, tmp_path / kind, template_build.authorized_keys([("k", KEY)])
    )
    overrides = [
        "--override-input", "nixpkgs", f"path:{flakes['nixpkgs']}",
        "--override-input", "nixmox", f"path:{flakes['nixmox']}",
    ]  # fmt: skip
    nix_sandbox.nix("flake", "lock", f"path:{staged}", *overrides)
    lock = json.loads((staged / "flake.lock").read_text())
    assert lock["nodes"]["nixpkgs"]["original"] == {
        "owner": "NixOS",
        "ref": "nixos-25.05",
        "repo": "nixpkgs",
        "type": "github",
    }
    assert lock["nodes"]["nixmox"]["original"]["repo"] == "nixmox"
    # nixmox's own nixpkgs follows the template's: one nixpkgs in the closure.
    assert lock["nodes"]["nixmox"]["inputs"]["nixpkgs"] == ["nixpkgs"]

    apply = (
        "c: { inherit (c) system; "
        "keys = (builtins.elemAt c.modules 2).nixmox.guest.authorizedKeys; "
        "guest = map toString (builtins.elemAt c.modules 0).imports; "
        "config = toString (builtins.elemAt c.modules 1); }"
    )
    out = nix_sandbox.nix(
        "eval", "--json", f"path:{staged}#nixosConfigurations.{kind}", "--apply", apply
    ).stdout
    shown = json.loads(out)
    assert shown["system"] == "x86_64-linux"
    assert shown["keys"] == [KEY]
    assert [Path(p).name for p in shown["guest"]] == ["module.nix", "nixmox-guest.nix"]
    assert shown["config"].endswith("/configuration.nix")

    # What nixos-rebuild build-image would list: nothing, the image modules set
    # system.build.image. What nixmox builds is there.
    k = template_build.kind(kind)
    build = json.loads(
        nix_sandbox.nix(
            "eval", "--json", f"path:{staged}#nixosConfigurations.{kind}.config.system.build",
            "--apply", "b: builtins.mapAttrs (n: v: v.name or n) b",
        ).stdout
    )  # fmt: skip
    assert "images" not in build and "image" in build
    name = nix_sandbox.nix(
        "eval", "--raw", template_build.installable(k, f"path:{staged}") + ".name"
    ).stdout  # fmt: skip
    assert name == {"tarball": "tarball", "VMA": "proxmox-nixos-vm"}[k.output]


@pytest.mark.peer
def test_without_key_file_the_keys_are_empty(
    nix_sandbox: NixSandbox, flakes: dict[str, Path], tmp_path: Path
) -> None:
    staged = template_build.stage(REPO / "templates" / "nixos-lxc", tmp_path / "bare", None)
    out = nix_sandbox.nix(
        "eval", "--json", f"path:{staged}#nixosConfigurations.nixos-lxc",
        "--override-input", "nixpkgs", f"path:{flakes['nixpkgs']}",
        "--override-input", "nixmox", f"path:{flakes['nixmox']}",
        "--apply", "c: (builtins.elemAt c.modules 2).nixmox.guest.authorizedKeys",
    ).stdout  # fmt: skip
    # Empty: the profile's assertion then stops the build (test above).
    assert json.loads(out) == []


NIX_WRAPPER = """\
#!/bin/sh
exec {real} --option flake-registry {registry} --option substituters "" --option builders "" \\
  --option sandbox false --option build-users-group "" --option system-features "{features}" "$@"
"""


@pytest.mark.peer
@pytest.mark.parametrize(
    ("kind", "kvm"),
    [("nixos-lxc", False), ("nixos-vm", True), ("nixos-vm", False)],
    ids=["lxc", "vm", "vm-without-kvm"],
)
def test_template_build_with_the_real_nix(
    nix_sandbox: NixSandbox, flakes: dict[str, Path], tmp_path: Path, kind: str, kvm: bool
) -> None:
    """`nixmox template build` against the real nix 2.8, which evaluates the template
    with the stub nixpkgs and builds its image derivation into a /nix of its own."""
    need_root("a /nix of its own (a bind mount in a private mount namespace)")
    unshare = need_binary("unshare", "util-linux")
    mine = tmp_path / "my-flake"
    shutil.copytree(REPO / "templates" / kind, mine)
    text = (mine / "flake.nix").read_text()
    text = text.replace('"github:NixOS/nixpkgs/nixos-25.05"', f'"path:{flakes["nixpkgs"]}"')
    (mine / "flake.nix").write_text(
        text.replace('"github:OWNER/nixmox"', f'"path:{flakes["nixmox"]}"')
    )
    (mine / "authorized_keys").write_text(KEY + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nix").write_text(
        NIX_WRAPPER.format(
            real=shutil.which(nix_sandbox.nix_bin),
            registry=nix_sandbox.registry,
            features="benchmark big-parallel" + (" kvm" if kvm else ""),
        )
    )
    (bin_dir / "nix").chmod(0o755)
    nix_root = tmp_path / "nix-root"
    nix_root.mkdir()
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            unshare, "--mount", "--propagation", "private",
            "sh", "-c", f'mount --bind {nix_root} /nix && exec "$@"', "sh",
            sys.executable, "-m", "nixmox.cli.main",
            "template", "build", kind, "--flake", str(mine), "--out", str(out),
        ],
        env={**nix_sandbox.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if kind == "nixos-vm" and not kvm:
        assert proc.returncode == 1
        [line] = proc.stderr.strip().splitlines()
        assert "needs the `kvm` system feature" in line and "nothing was built" in line
        assert not (out / "result-nixos-vm").is_symlink()
        return
    assert proc.returncode == 0, proc.stderr
    built = next(ln for ln in proc.stdout.splitlines() if ln.startswith("built "))
    image = built.removeprefix("built ")
    name = (
        "tarball/nixos-system-x86_64-linux.tar.xz"
        if kvm is False
        else "vzdump-qemu-nixos-vm.vma.zst"
    )
    assert image.startswith("/nix/store/") and image.endswith(name)
    # In the /nix that nix built into; the out-link in --out keeps it from the GC.
    assert (nix_root / image.removeprefix("/nix/")).read_text().strip() in (
        "tarball",
        "proxmox-nixos-vm",
    )
    assert str(os.readlink(out / f"result-{kind}")) == image.removesuffix("/" + name)


# -- pure parts of build and upload --------------------------------------------------


def test_build_argv() -> None:
    vm = template_build.kind("nixos-vm")
    assert template_build.build_argv(vm, "path:/x", "/o/r", [("nixmox", "git+file:///r")]) == [
        "nix", "--extra-experimental-features", "nix-command flakes", "build",
        "--out-link", "/o/r", "path:/x#nixosConfigurations.nixos-vm.config.system.build.VMA",
        "--override-input", "nixmox", "git+file:///r",
    ]  # fmt: skip
    assert template_build.build_argv(template_build.kind("nixos-lxc-docker"), "/y", "/o/r")[-1] == (
        "/y#nixosConfigurations.nixos-lxc-docker.config.system.build.tarball"
    )
    with pytest.raises(ConfigError, match="choose one of nixos-lxc, nixos-lxc-docker, nixos-vm"):
        template_build.kind("windows")


def test_a_vm_image_needs_kvm_here_or_a_builder() -> None:
    files = {"/etc/nix/machines": "# none yet\n", "/etc/nix/more": "ssh://b x86_64-linux\n"}
    read = files.get

    def refusal(text: str) -> str | None:
        return template_build.vm_build_refusal(template_build.nix_settings(text), read)

    assert refusal("system-features = benchmark big-parallel kvm nixos-test\n") is None
    no_kvm = "system-features = benchmark big-parallel\nbuilders = @/etc/nix/machines\n"
    assert "needs the `kvm` system feature" in (refusal(no_kvm) or "")
    assert refusal(no_kvm.replace("machines", "absent")) is not None
    assert refusal(no_kvm.replace("machines", "more")) is None
    assert refusal("system-features = \nbuilders = ssh://builder x86_64-linux\n") is None


def test_authorized_keys_refuses_private_keys() -> None:
    assert template_build.authorized_keys([("a", f"# mine\n{KEY}\n\n{KEY}\n")]) == f"{KEY}\n"
    with pytest.raises(ConfigError, match="b:1: not an SSH public key"):
        template_build.authorized_keys([("b", "-----BEGIN OPENSSH PRIVATE KEY-----\n")])
    with pytest.raises(ConfigError, match="no SSH public key"):
        template_build.authorized_keys([("c", "# nothing\n")])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nixos-image-lxc-proxmox-25.05.20250601.abc-x86_64-linux.tar.xz", "vztmpl"),
        ("nixos-lxc.tar.zst", "vztmpl"),
        ("vzdump-qemu-nixos-25.05.20250601.abc.vma.zst", "vm"),
        ("vzdump-qemu-9000-2026_01_01-00_00_00.vma.zst", "vm"),
    ],
)
def test_image_type(name: str, expected: str) -> None:
    assert template_build.image_type(name) == expected


@pytest.mark.parametrize("name", ["disk.qcow2", "vzdump-lxc-100-2026.tar.zst", "x.iso"])
def test_not_an_image(name: str) -> None:
    with pytest.raises(ConfigError, match="not a template image"):
        template_build.image_type(name)


def test_storage_choice() -> None:
    inv = load_inventory(EXAMPLE)
    # local and backups both hold vztmpl; the guests take theirs from local.
    assert template_build.pick_storage(inv, "vztmpl", None, "pve1").storage == "local"
    assert template_build.pick_storage(inv, "backup", None, "pve1").storage == "backups"
    assert template_build.pick_storage(inv, "vztmpl", "backups", "pve1").storage == "backups"
    with pytest.raises(ConfigError, match="storage vm-disks does not hold vztmpl"):
        template_build.pick_storage(inv, "vztmpl", "vm-disks", "pve1")
    guests = [g.model_copy(update={"template": None}) for g in inv.guests]
    bare = inv.model_copy(update={"guests": guests})
    with pytest.raises(
        ConfigError, match=r"several storages hold vztmpl content \(local, backups\)"
    ):
        template_build.pick_storage(bare, "vztmpl", None, "pve1")


def test_the_image_in_a_build_output(tmp_path: Path) -> None:
    out = tmp_path / "abc-tarball"
    (out / "tarball").mkdir(parents=True)
    (out / "nix-support").mkdir()
    (out / "nix-support" / "hydra-build-products").write_text("file system-tarball x\n")
    assert template_build.image_in(out) is None
    (out / "tarball" / "nixos-system-x86_64-linux.tar.xz").write_text("x")
    assert template_build.image_in(out) == out / "tarball" / "nixos-system-x86_64-linux.tar.xz"


def test_a_built_image_is_uploaded_under_a_name_of_its_own(tmp_path: Path) -> None:
    plain = tmp_path / "nixos-lxc.tar.xz"
    assert template_build.upload_name(plain) == "nixos-lxc.tar.xz"
    store = Path("/nix/store/0c8sw3qgvwpn8p7bm1j7wbmjr3amsjs2-tarball/tarball/nixos.tar.xz")
    assert template_build.upload_name(store) == "nixos-0c8sw3qg.tar.xz"
    rows = [{"volid": "local:vztmpl/a.tar.xz", "size": 5}]
    assert template_build.existing("local:vztmpl/a.tar.xz", rows, 5) == "same"
    assert template_build.existing("local:vztmpl/a.tar.xz", rows, 6) == "different"
    assert template_build.existing("local:vztmpl/b.tar.xz", rows, 5) == "absent"


# -- template build ---------------------------------------------------------------------


def test_build_without_nixos_rebuild_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    key = tmp_path / "id.pub"
    key.write_text(KEY + "\n")
    out = tmp_path / "out"
    assert run(["template", "build", "nixos-lxc", "--out", str(out), "--ssh-key", str(key)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "`nix` is not on PATH" in err[0] and "nothing was built" in err[0]
    assert not out.exists()


STAND_IN = """\
#!/bin/sh
# nix stand-in: records `build`'s argv and working directory, "builds" an image
# and points the --out-link at it; `show-config` answers from {features}.
for a in "$@"; do case "$a" in show-config) cat "{features}" 2>/dev/null; exit 0;; esac; done
printf '%s\\n' "$@" > "{log}"
pwd >> "{log}"
link=
while [ $# -gt 0 ]; do case "$1" in --out-link) link=$2; shift 2;; *) shift;; esac; done
mkdir -p "{store}/tarball"
printf 'image' > "{store}/tarball/{image}"
ln -sfn "{store}" "$link"
"""


def _stand_ins(tmp_path: Path, image: str, *, fail: bool = False) -> tuple[Path, Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.log"
    store = tmp_path / "store" / "abc-nixos-image"
    features = tmp_path / "nix-features"
    features.write_text("system-features = benchmark big-parallel kvm\nbuilders = \n")
    script = STAND_IN.format(log=log, store=store, image=image, features=features)
    if fail:
        script = '#!/bin/sh\necho "error: cannot fetch github:NixOS/nixpkgs" >&2\nexit 1\n'
    (bin_dir / "nix").write_text(script)
    for p in bin_dir.iterdir():
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return bin_dir, log, store


def test_build_runs_nix_build_of_the_image_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = "nixos-image-lxc-proxmox-25.05-x86_64-linux.tar.xz"
    bin_dir, log, store = _stand_ins(tmp_path, image)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    key = tmp_path / "id.pub"
    key.write_text(KEY + "\n")
    out = tmp_path / "out"
    code = run(["template", "build", "nixos-lxc-docker", "--out", str(out), "--ssh-key", str(key)])
    printed = capsys.readouterr().out
    assert code == 0
    staged = out / "flake-nixos-lxc-docker"
    argv = log.read_text().splitlines()
    nixmox = f"git+file://{REPO}" if (REPO / ".git").exists() else f"path:{REPO}"
    assert argv == [
        "--extra-experimental-features", "nix-command flakes", "build",
        "--out-link", str(out / "result-nixos-lxc-docker"),
        f"path:{staged}#nixosConfigurations.nixos-lxc-docker.config.system.build.tarball",
        "--override-input", "nixmox", nixmox,
        str(out),  # its working directory
    ]  # fmt: skip
    assert (staged / "authorized_keys").read_text() == KEY + "\n"
    assert (staged / "configuration.nix").read_text() == (
        REPO / "templates" / "nixos-lxc-docker" / "configuration.nix"
    ).read_text()
    assert f"built {store}/tarball/{image}" in printed
    assert f"next: nixmox template upload {store}/tarball/{image}" in printed


def _with_keys(keys: str) -> str:
    """The example inventory with ``[templates] ssh_keys = [KEYS]``."""
    text = (REPO / "examples" / "homelab.toml").read_text()
    start = text.index("ssh_keys = [")
    end = text.index("\n", start)
    return text[:start] + f"ssh_keys = [{keys}]" + text[end:]


def test_build_takes_the_keys_from_the_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = "nixos-image-lxc-proxmox-25.05-x86_64-linux.tar.xz"
    bin_dir, log, _ = _stand_ins(tmp_path, image)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    other = KEY.replace("FakeKey", "OtherKey").replace("nixmox@test", "admin@laptop")
    inv = tmp_path / "nixmox.toml"
    inv.write_text(_with_keys(f'"{KEY}", "{other}"'))
    out = tmp_path / "out"
    assert run(["template", "build", "nixos-lxc", "--out", str(out), "--config", str(inv)]) == 0
    staged = out / "flake-nixos-lxc"
    assert (staged / "authorized_keys").read_text() == f"{KEY}\n{other}\n"
    assert log.exists()
    # Without keys anywhere nothing is built, and the message names both ways to give them.
    log.unlink()
    bare = tmp_path / "bare.toml"
    bare.write_text(_with_keys(""))
    assert run(["template", "build", "nixos-lxc", "--out", str(out), "--config", str(bare)]) == 1
    assert "[templates] ssh_keys" in capsys.readouterr().err
    assert not log.exists()


def test_a_private_key_in_the_inventory_is_refused_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = tmp_path / "nixmox.toml"
    text = _with_keys('"-----BEGIN OPENSSH PRIVATE KEY-----"')
    inv.write_text(text)
    assert run(["config", "check", "--config", str(inv)]) == 1
    err = capsys.readouterr().err
    line = 1 + text.splitlines().index('ssh_keys = ["-----BEGIN OPENSSH PRIVATE KEY-----"]')
    assert f"nixmox.toml:{line}:" in err and "templates.ssh_keys" in err
    assert "is not an SSH public key" in err


def test_build_with_the_users_flake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = "vzdump-qemu-nixos-25.05.vma.zst"
    bin_dir, log, store = _stand_ins(tmp_path, image)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    mine = tmp_path / "my-vm"
    shutil.copytree(REPO / "templates" / "nixos-vm", mine)
    assert (
        run(["template", "build", "nixos-vm", "--flake", str(mine), "--out", str(tmp_path / "o")])
        == 0
    )
    assert log.read_text().splitlines()[3:6] == [
        "--out-link", str(tmp_path / "o" / "result-nixos-vm"),
        f"{mine}#nixosConfigurations.nixos-vm.config.system.build.VMA",
    ]  # fmt: skip
    assert f"built {store}/tarball/{image}" in capsys.readouterr().out


def test_build_failure_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir, _, _ = _stand_ins(tmp_path, "x.tar.xz", fail=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    key = tmp_path / "id.pub"
    key.write_text(KEY + "\n")
    code = run(
        ["template", "build", "nixos-lxc", "--out", str(tmp_path / "o"), "--ssh-key", str(key)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "nix build failed (exit 1): error: cannot fetch github:NixOS/nixpkgs" in err[0]


def test_build_needs_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir, log, _ = _stand_ins(tmp_path, "x.tar.xz")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert run(["template", "build", "nixos-lxc", "--out", str(tmp_path / "o")]) == 1
    assert "give --ssh-key FILE" in capsys.readouterr().err
    assert not log.exists()


# -- template upload against the lab ------------------------------------------------------


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, Any]:
    code = run(argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err)


@pytest.mark.peer
def test_upload_lxc_template_then_plan_can_create_from_it(
    lab_env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = _only_guest(tmp_path, "nixos-lxc", "local:vztmpl/nixos-lxc-test.tar.xz")
    # Before the upload the storage has no such template: plan says so and how to fix it,
    # and apply creates nothing.
    assert run(["plan", "--json", "--config", str(inv)]) == 1
    [row] = json.loads(capsys.readouterr().out)["guests"]
    assert row["action"] == "error"
    # Located at the inventory key it comes from, as config check locates its errors.
    assert row["error"] == (
        f"{inv}:156:1: guests[0].template: "
        "template local:vztmpl/nixos-lxc-test.tar.xz is not on storage local of pve1: "
        "put it there with `nixmox template upload FILE`"
    )
    assert run(["apply", "--yes", "--config", str(inv)]) == 1
    said = "".join(capsys.readouterr())
    assert "nixos-lxc-test.tar.xz is not on storage local" in said, said
    assert lab_env.pve.guest(100) is None

    image = tmp_path / "nixos-lxc-test.tar.xz"
    image.write_bytes(os.urandom(256 * 1024))
    code, answer = _json(
        capsys, ["template", "upload", str(image), "--config", str(EXAMPLE), "--json"]
    )
    assert code == 0, answer
    assert answer["volid"] == "local:vztmpl/nixos-lxc-test.tar.xz" and answer["uploaded"] is True
    volumes = lab_env.pve.storages["local"]["volumes"]
    assert volumes["vztmpl/nixos-lxc-test.tar.xz"]["content"] == "vztmpl"
    assert volumes["vztmpl/nixos-lxc-test.tar.xz"]["size"] == 256 * 1024
    # The bytes went through PVE's multipart upload as they are.
    assert lab_env.pve.uploaded["data"] == image.read_bytes()
    assert lab_env.pve.uploaded["content"] == "vztmpl"

    # Again: already there, nothing sent.
    code, answer = _json(
        capsys, ["template", "upload", str(image), "--config", str(EXAMPLE), "--json"]
    )
    assert code == 0 and answer["uploaded"] is False
    # A rebuilt image under the same name is not taken for the one uploaded.
    image.write_bytes(os.urandom(128 * 1024))
    code, err = _json(capsys, ["template", "upload", str(image), "--config", str(EXAMPLE)])
    assert code == 1 and "is there already with other content: give --name" in err
    assert volumes["vztmpl/nixos-lxc-test.tar.xz"]["size"] == 256 * 1024

    # The inventory's LXC guest names it: plan shows the guest to create, and
    # apply creates it from the uploaded file.
    code, plan = _json(capsys, ["plan", "--json", "--config", str(inv)])
    assert code == 0, plan
    assert [(g["name"], g["action"], g["error"]) for g in plan["guests"]] == [
        ("nixos-lxc", "create", None)
    ]
    code, applied = _json(capsys, ["apply", "--yes", "--json", "--config", str(inv)])
    assert code == 0, applied
    ct = lab_env.pve.guest(100)
    assert ct is not None and ct.name == "nixos-lxc"


def _only_guest(tmp_path: Path, name: str, template: str) -> Path:
    """The example inventory with one guest, whose template is ``template``."""
    data = tomllib.loads(EXAMPLE.read_text())
    data["guests"] = [g for g in data["guests"] if g["name"] == name]
    data["guests"][0]["template"] = template
    for key in ("backups",):
        data.pop(key, None)
    inv = tmp_path / f"only-{name}.toml"
    inv.write_text(tomlkit.dumps(data))
    return inv


@pytest.mark.peer
def test_upload_vm_image_becomes_a_vm_template(
    lab_env: RunningLab, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    backups = tmp_path / "backups"
    lab_env.pve.storages["backups"]["path"] = str(backups)
    monkeypatch.setenv("NIXMOX_SSH_CONFIG", str(sshd.ssh_config))
    inv = tmp_path / "nixmox.toml"
    # The inventory says where the backup storage is (nixmox reads the dump directory
    # from it, not from GET /storage/ID, which takes Datastore.Allocate).
    inv.write_text(
        EXAMPLE.read_text()
        .replace('address = "pve1.home.arpa"', f'address = "{sshd.host}"')
        .replace('path = "/rpool/backups"', f'path = "{backups}"')
    )
    image = tmp_path / "vzdump-qemu-nixos-25.05.20250601.abcdef.vma.zst"
    image.write_bytes(os.urandom(128 * 1024))

    code, answer = _json(
        capsys,
        ["template", "upload", str(image), "--config", str(inv), "--vmid", "9100", "--json"],
    )
    assert code == 0, answer
    assert answer["vmid"] == 9100 and answer["name"] == "nixos-vm"
    vm = lab_env.pve.guest(9100)
    assert vm is not None and vm.template
    assert vm.name == "nixos-vm"
    # The archive names local-lvm (nixpkgs' default), which this ZFS host lacks: the
    # disk went to the inventory's images storage instead.
    assert str(vm.config["virtio0"]).startswith("vm-disks:base-9100-disk-0")
    # The template boots from virtio0; a guest cloning it that declares scsi0 would get
    # a new empty disk: plan says so instead of creating it.
    data = tomllib.loads(inv.read_text())
    data["guests"] = [g for g in data["guests"] if g["name"] == "nixos-vm"]
    data["guests"][0]["clone"] = 9100
    data.pop("backups", None)
    cloning = tmp_path / "cloning.toml"
    cloning.write_text(tomlkit.dumps(data))
    code = run(["plan", "--json", "--config", str(cloning)])
    [row] = json.loads(capsys.readouterr().out)["guests"]
    assert code != 0 and row["action"] == "error" and "boots from virtio0" in row["error"], row
    assert 'declare slot = "virtio0"' in row["error"]
    data["guests"][0]["disks"][0]["slot"] = "virtio0"
    cloning.write_text(tomlkit.dumps(data))
    code, plan = _json(capsys, ["plan", "--json", "--config", str(cloning)])
    [row] = plan["guests"]
    assert row["action"] == "create" and row["error"] is None, row
    # Copied over SSH for real, restored, then the copy removed through the API.
    assert answer["archive"].startswith("backups:backup/vzdump-qemu-9100-")
    assert list((backups / "dump").iterdir()) == []
    assert lab_env.pve.backups("backups", 9100) == {}

    # A taken VMID is refused before anything is copied.
    code, err = _json(
        capsys, ["template", "upload", str(image), "--config", str(inv), "--vmid", "9100"]
    )
    assert code == 1 and "VMID 9100 is taken" in err

    # A restore that fails leaves neither a VM nor the copied archive behind.
    lab_env.pve.fail("POST", "/nodes/pve1/qemu", 500, "unable to restore VM 9101 - no space")
    code, err = _json(
        capsys, ["template", "upload", str(image), "--config", str(inv), "--vmid", "9101"]
    )
    assert code == 1 and "no space" in err
    assert lab_env.pve.guest(9101) is None
    assert list((backups / "dump").iterdir()) == []


@pytest.mark.peer
def test_upload_refusals(
    lab_env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"x")
    code, err = _json(capsys, ["template", "upload", str(disk), "--config", str(EXAMPLE)])
    assert code == 1 and "not a template image" in err
    image = tmp_path / "nixos.tar.xz"
    image.write_bytes(b"x")
    code, err = _json(
        capsys,
        ["template", "upload", str(image), "--config", str(EXAMPLE), "--storage", "vm-disks"],
    )
    assert code == 1 and "storage vm-disks does not hold vztmpl content" in err
    assert "vztmpl/nixos.tar.xz" not in lab_env.pve.storages["local"]["volumes"]
