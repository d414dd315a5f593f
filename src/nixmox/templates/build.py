"""NixOS template images: which flake builds which image, and where an image goes.

Pure decisions (the build command line, the image a build printed, the
storage and name an upload uses) plus staging the template flake. The
builds and uploads run in :mod:`nixmox.templates.image` and
:mod:`nixmox.templates.upload`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nixmox.core.errors import ConfigError, NixmoxError
from nixmox.inventory.model import Inventory, Storage


class TemplateError(NixmoxError):
    """A template cannot be built or uploaded here; the message says what is missing."""


@dataclass(frozen=True)
class Kind:
    """One template: its flake directory and ``nixosConfigurations`` name, and its image."""

    name: str
    variant: str  # nixos-rebuild build-image --image-variant
    guest: str  # "lxc" or "vm"


KINDS = {
    "nixos-lxc": Kind("nixos-lxc", "proxmox-lxc", "lxc"),
    "nixos-lxc-docker": Kind("nixos-lxc-docker", "proxmox-lxc", "lxc"),
    "nixos-vm": Kind("nixos-vm", "proxmox", "vm"),
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


def build_argv(
    k: Kind, flake: str, overrides: Sequence[tuple[str, str]] = (), program: str = "nixos-rebuild"
) -> list[str]:
    """``nixos-rebuild build-image --image-variant V --flake FLAKE#NAME [--override-input ...]``."""
    argv = [program, "build-image", "--image-variant", k.variant, "--flake", f"{flake}#{k.name}"]
    for name, uri in overrides:
        argv += ["--override-input", name, uri]
    return argv


IMAGE_SUFFIXES = (".tar.xz", ".tar.zst", ".tar.gz", ".vma.zst", ".vma.gz", ".vma.lzo", ".vma")
_IMAGE = re.compile(r"(/\S+?(?:" + "|".join(re.escape(s) for s in IMAGE_SUFFIXES) + r"))(?=\s|$)")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FOUND_IN = re.compile(r"can be found in\s+(\S+)")


def image_from_output(output: str) -> str | None:
    """The image path nixos-rebuild printed ("Done. The disk image can be found in
    PATH", maybe in bold, maybe relative), else the last image path it mentioned."""
    plain = _ANSI.sub("", output)
    said = _FOUND_IN.findall(plain)
    if said:
        return str(said[-1])
    found = _IMAGE.findall(plain)
    return str(found[-1]) if found else None


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
        raise ConfigError(f"the inventory has {len(names)} nodes: give --node")
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


def vzdump_name(vmid: int, stamp: str, source: str) -> str:
    """The archive's name on the backup storage: PVE's own pattern, for ``vmid``."""
    suffix = next(s for s in IMAGE_SUFFIXES if source.endswith(s) and s.startswith(".vma"))
    return f"vzdump-qemu-{vmid}-{stamp}{suffix}"
