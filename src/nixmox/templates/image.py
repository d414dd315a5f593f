"""``template build``: stage the template flake and ``nix build`` its image attribute.

:func:`prepare_build` checks the tools, the keys and the flake before
anything runs and returns an :class:`ImageBuild` whose command line the
caller can show before the (long) build starts.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from nixmox.adapters.runner import Runner
from nixmox.core.errors import ConfigError
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.templates import build as rules


def _inventory_keys(config: Path | None) -> str | None:
    """``[templates] ssh_keys`` of the inventory, when there is one that declares them."""
    try:
        path = find_inventory(config)
    except ConfigError:
        if config is not None:
            raise
        return None  # no inventory anywhere: --ssh-key it is
    inv = load_inventory(path)
    if inv.templates is None or not inv.templates.ssh_keys:
        return None
    return rules.authorized_keys(
        [(f"{path}: templates.ssh_keys", "\n".join(inv.templates.ssh_keys))]
    )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"--ssh-key {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class ImageBuild:
    """A checked build: its command line, ready to run in ``out``; ``link`` keeps the
    image from garbage collection until the user removes it."""

    argv: list[str]
    out: Path
    link: Path
    runner: Runner

    def run(self) -> str:
        """Build; return the image file's path."""
        return str(rules.run_build(self.argv, self.runner, self.out, self.link))


def prepare_build(
    kind_name: str, *, out: Path, flake: Path | None, ssh_keys: list[Path], config: Path | None
) -> ImageBuild:
    """The build of one template image with ``nix build`` (see :mod:`nixmox.templates.build`).

    The guest's SSH keys: the ``ssh_keys`` files, else the inventory's
    ``[templates] ssh_keys``.
    """
    kind = rules.kind(kind_name)
    if shutil.which("nix") is None:
        raise rules.TemplateError(
            "`nix` is not on PATH: building a NixOS image needs nix (with flakes) and access "
            "to nixpkgs; run it on NixOS or wherever nix is installed; nothing was built"
        )
    out = out.resolve()
    keys = rules.authorized_keys((str(p), _read(p)) for p in ssh_keys) if ssh_keys else None
    if keys is None and flake is None:
        keys = _inventory_keys(config)
    overrides: list[tuple[str, str]] = []
    root: Path | None = None
    if flake is not None:
        if keys is not None:
            raise ConfigError(
                "--ssh-key writes authorized_keys into the flake nixmox stages; with --flake, "
                f"put the keys in {flake}/authorized_keys yourself"
            )
        if not (flake / "flake.nix").is_file():
            raise ConfigError(f"--flake {flake}: no flake.nix there")
        uri = str(flake.resolve())
    else:
        root = rules.source_root()
        if root is None:
            raise rules.TemplateError(
                "this nixmox was installed without its templates: give --flake DIR "
                "(a copy of templates/KIND from the nixmox repository)"
            )
        if keys is None:
            raise ConfigError(
                "give --ssh-key FILE (a public key file, repeatable) or [templates] ssh_keys "
                "in the inventory: without a key the guest accepts no SSH login"
            )
    runner = Runner()
    rules.check_can_build(kind, runner)
    out.mkdir(parents=True, exist_ok=True)
    if root is not None:
        staged = rules.stage(root / "templates" / kind.name, out / f"flake-{kind.name}", keys)
        uri = f"path:{staged}"
        overrides.append(("nixmox", rules.flake_uri(root)))
    link = out / f"result-{kind.name}"
    return ImageBuild(rules.build_argv(kind, uri, str(link), overrides), out, link, runner)
