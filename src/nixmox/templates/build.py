"""NixOS template images: which flake builds which image, and where an image goes.

Pure decisions (the build command line, the image a build printed, the
storage and name an upload uses) plus staging the template flake. The
builds and uploads run in :mod:`nixmox.templates.image` and
:mod:`nixmox.templates.upload`.

Why ``nix build`` of ``config.system.build.tarball`` / ``.VMA`` and not
``nixos-rebuild build-image``: build-image lists its variants from
``system.build.images``, which nixpkgs' ``image/images.nix`` defines only while
``system.build.image`` is unset; the templates import the Proxmox image modules
themselves (so a later switch keeps their settings), and those set it. The
attributes also exist on releases older than build-image (before 25.05).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixmox.adapters.runner import Runner
from nixmox.core.errors import CommandError, ConfigError, NixmoxError
from nixmox.core.words import plural
from nixmox.inventory.model import Inventory, Storage

BUILD_TIMEOUT = 4 * 3600.0
NIX_FLAKES = ("--extra-experimental-features", "nix-command flakes")


class TemplateError(NixmoxError):
    """A template cannot be built or uploaded here; the message says what is missing."""


@dataclass(frozen=True)
class Kind:
    """One template: its flake directory and ``nixosConfigurations`` name, and its image."""

    name: str
    output: str  # config.system.build.<output>: the image (proxmox-lxc.nix, proxmox-image.nix)
    guest: str  # "lxc" or "vm"


KINDS = {
    "nixos-lxc": Kind("nixos-lxc", "tarball", "lxc"),
    "nixos-lxc-docker": Kind("nixos-lxc-docker", "tarball", "lxc"),
    "nixos-vm": Kind("nixos-vm", "VMA", "vm"),
}


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise ConfigError(f"no template kind {name!r}: choose one of {', '.join(KINDS)}")
    return KINDS[name]


def source_root(here: Path | None = None) -> Path | None:
    """The nixmox source tree this nixmox runs from, if it has the templates
    (a checkout or ``nix run``; a wheel install has none)."""
    root = (here or Path(__file__)).resolve().parents[3]
    if (root / "flake.nix").is_file() and (root / "templates" / "nixos-lxc").is_dir():
        return root
    return None


def flake_uri(root: Path) -> str:
    """The nixmox flake at ``root``: a git checkout as git+file (tracked files
    only, never a virtualenv), anything else as a path."""
    if (root / ".git").exists():
        return f"git+file://{root}"
    return f"path:{root}"


_KEY = re.compile(
    r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+@openssh\.com) [A-Za-z0-9+/=]+"
)


def authorized_keys(texts: Iterable[tuple[str, str]]) -> str:
    """The ``authorized_keys`` file for the guest, from (source, text) pairs;
    refuses anything but public keys (a private key must never reach the store)."""
    keys: list[str] = []
    for source, text in texts:
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if "PRIVATE KEY" in line or _KEY.match(line) is None:
                raise ConfigError(f"{source}:{number}: not an SSH public key")
            if line not in keys:
                keys.append(line)
    if not keys:
        raise ConfigError("no SSH public key given: the guest would accept no login")
    return "".join(f"{k}\n" for k in keys)


def stage(template_dir: Path, target: Path, keys: str | None) -> Path:
    """A fresh copy of one template flake at ``target`` (plus ``authorized_keys``)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(template_dir, target, ignore=shutil.ignore_patterns("result*", "flake.lock"))
    if keys is not None:
        (target / "authorized_keys").write_text(keys)
    return target


def installable(k: Kind, flake: str) -> str:
    """The image attribute of template ``k`` in ``flake``."""
    return f"{flake}#nixosConfigurations.{k.name}.config.system.build.{k.output}"


def build_argv(
    k: Kind,
    flake: str,
    out_link: str,
    overrides: Sequence[tuple[str, str]] = (),
    program: str = "nix",
) -> list[str]:
    """``nix build --out-link LINK FLAKE#…image [--override-input …]``.

    The out-link names the build's output (read back, rather than
    ``--print-out-paths``, which nix < 2.9 lacks) and is the image's GC root
    until it is uploaded.
    """
    argv = [program, *NIX_FLAKES, "build", "--out-link", out_link]
    argv.append(installable(k, flake))
    for name, uri in overrides:
        argv += ["--override-input", name, uri]
    return argv


IMAGE_SUFFIXES = (".tar.xz", ".tar.zst", ".tar.gz", ".vma.zst", ".vma.gz", ".vma.lzo", ".vma")


def image_in(output: Path) -> Path | None:
    """The one image file in a build output (``tarball/*.tar.xz``, ``vzdump-qemu-*.vma.zst``)."""
    if output.is_file():
        return output if output.name.endswith(IMAGE_SUFFIXES) else None
    found = sorted(p for p in output.rglob("*") if p.is_file() and p.name.endswith(IMAGE_SUFFIXES))
    return found[0] if len(found) == 1 else None


# -- what this machine can build -----------------------------------------------------


def nix_settings(show_config: str) -> dict[str, str]:
    """``nix show-config``'s ``name = value`` lines."""
    settings = {}
    for line in show_config.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            settings[name.strip()] = value.strip()
    return settings


def vm_build_refusal(settings: Mapping[str, str], read: Callable[[str], str | None]) -> str | None:
    """Why this nix cannot build a VM image, or None.

    nixpkgs makes the disk inside a VM (make-disk-image), a derivation that
    requires the ``kvm`` system feature; without it here and without remote
    builders, nix would refuse only after evaluating the whole system.
    ``read`` reads a machines file (None when there is none).
    """
    if "kvm" in settings.get("system-features", "").split():
        return None
    if _has_builders(settings.get("builders", ""), read):
        return None  # a remote builder may have it: nix decides
    return (
        "building nixos-vm needs the `kvm` system feature (nixpkgs makes the disk image in "
        "a VM) and this nix has none: build where /dev/kvm exists (`system-features` in "
        "nix.conf lists kvm), or configure a remote builder that has it; nothing was built"
    )


def _has_builders(value: str, read: Callable[[str], str | None]) -> bool:
    for spec in re.split(r"[;\n]", value):
        spec = spec.strip()
        if spec.startswith("@"):
            text = read(spec[1:]) or ""
            if any(ln.strip() and not ln.strip().startswith("#") for ln in text.splitlines()):
                return True
        elif spec:
            return True
    return False


def _read_file(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def check_can_build(k: Kind, runner: Runner, program: str = "nix") -> None:
    """Refuse early (TemplateError) what this machine's nix cannot build."""
    if k.guest != "vm":
        return
    shown = runner.run([program, *NIX_FLAKES, "show-config"], changes=False, check=False)
    if shown.returncode != 0:
        return  # the build itself will say what is wrong
    why = vm_build_refusal(nix_settings(shown.stdout), _read_file)
    if why is not None:
        raise TemplateError(why)


def run_build(argv: list[str], runner: Runner, cwd: Path, out_link: Path) -> Path:
    """Run the build; the image file it made (TemplateError in one line otherwise)."""
    try:
        runner.run(argv, timeout=BUILD_TIMEOUT, cwd=str(cwd))
    except CommandError as exc:
        tail = (exc.stderr.strip().splitlines() or ["no error output"])[-1]
        raise TemplateError(f"nix build failed (exit {exc.returncode}): {tail}") from None
    output = out_link.resolve()
    image = image_in(output) if output.exists() else None
    if image is None:
        raise TemplateError(f"nix build finished but {out_link} holds no single image file")
    return image


# -- upload -------------------------------------------------------------------------

_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def image_type(filename: str) -> str:
    """``vztmpl`` for a container tarball, ``vm`` for a vzdump archive of a VM."""
    name = Path(filename).name
    if name.startswith("vzdump-qemu-") and name.endswith(
        (".vma.zst", ".vma.gz", ".vma.lzo", ".vma")
    ):
        return "vm"
    if name.endswith((".tar.xz", ".tar.zst", ".tar.gz")) and not name.startswith("vzdump-"):
        return "vztmpl"
    raise ConfigError(
        f"{name}: not a template image (a container tarball *.tar.xz/*.tar.zst, "
        "or a VM archive vzdump-qemu-*.vma.zst)"
    )


_STORE_PATH = re.compile(r"/nix/store/([0-9a-df-np-sv-z]{32})-")


def upload_name(file: Path) -> str:
    """The name an image is uploaded as. A built image (in the Nix store) gets its
    store hash's first 8 characters: nixpkgs names every build of a configuration
    alike, and a rebuilt image must not pass for the one uploaded before."""
    name = file.name
    found = _STORE_PATH.match(str(file.resolve()))
    if found is None:
        return name
    suffix = next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")
    return f"{name.removesuffix(suffix)}-{found.group(1)[:8]}{suffix}"


def existing(volid: str, rows: Iterable[Mapping[str, Any]], size: int) -> str:
    """Whether ``volid`` is on the storage: ``absent``, ``same`` (that size) or ``different``."""
    for row in rows:
        if row.get("volid") == volid:
            return "same" if int(row.get("size") or -1) == size else "different"
    return "absent"


def check_filename(name: str) -> str:
    if _FILENAME.fullmatch(name) is None or len(name) > 255:
        raise ConfigError(f"{name!r}: a file name of letters, digits, '.', '-' and '_' only")
    return name


def pick_node(inv: Inventory, node: str | None) -> str:
    names = [n.name for n in inv.nodes]
    if node is not None:
        if node not in names:
            raise ConfigError(f"--node {node}: no such node in the inventory")
        return node
    if len(names) != 1:
        raise ConfigError(f"the inventory has {plural(len(names), 'node')}: give --node")
    return names[0]


def pick_storage(inv: Inventory, content: str, storage: str | None, node: str) -> Storage:
    """The inventory's storage for ``content`` (``vztmpl``, ``backup``) on ``node``: the
    one given, the only one, or the one the inventory's guests already take templates from."""
    storages = {s.storage: s for s in inv.storages if not s.nodes or node in s.nodes}
    if storage is not None:
        if storage not in storages:
            raise ConfigError(f"--storage {storage}: no such storage on {node} in the inventory")
        if content not in storages[storage].content:
            raise ConfigError(f"storage {storage} does not hold {content} content")
        return storages[storage]
    fit = [s for s in storages.values() if content in s.content]
    if not fit:
        raise ConfigError(f"no storage on {node} in the inventory holds {content} content")
    if len(fit) > 1 and content == "vztmpl":
        used = {g.template.split(":", 1)[0] for g in inv.guests if g.template}
        named = [s for s in fit if s.storage in used]
        if len(named) == 1:
            return named[0]
    if len(fit) > 1:
        names = ", ".join(s.storage for s in fit)
        raise ConfigError(f"several storages hold {content} content ({names}): give --storage")
    return fit[0]


def images_storage(inv: Inventory, node: str) -> Storage:
    """Where a restored VM template's disks go: the only ``images`` storage on ``node``, or
    the one the inventory's cloned VMs put their disks on.

    Without ``storage=`` PVE restores each disk to the storage named in the archive
    (qemu-server, PVE::QemuServer::parse_backup_hints): a nixpkgs image names
    ``local-lvm``, which a ZFS install does not have."""
    fit = [s for s in inv.storages if "images" in s.content and (not s.nodes or node in s.nodes)]
    if not fit:
        raise ConfigError(f"no storage on {node} in the inventory holds images content")
    if len(fit) > 1:
        used = {g.disks[0].storage for g in inv.guests if g.clone is not None and g.disks}
        named = [s for s in fit if s.storage in used]
        if len(named) != 1:
            names = ", ".join(s.storage for s in fit)
            raise ConfigError(
                f"several storages hold images content ({names}) and the cloned VMs do not "
                "name one: the template's disks go where the clones' first disk is declared"
            )
        return named[0]
    return fit[0]


def vzdump_name(vmid: int, stamp: str, source: str) -> str:
    """The archive's name on the backup storage: PVE's own pattern, for ``vmid``."""
    suffix = next(s for s in IMAGE_SUFFIXES if source.endswith(s) and s.startswith(".vma"))
    return f"vzdump-qemu-{vmid}-{stamp}{suffix}"
