"""``template build``: stage the template flake and run ``nixos-rebuild build-image``.

:func:`prepare_build` checks the tools, the keys and the flake before
anything runs and returns an :class:`ImageBuild` whose command line the
caller can show before the (long) build starts.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from nixmox.adapters.runner import Runner
from nixmox.core.errors import CommandError, ConfigError
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.templates import build as rules

BUILD_TIMEOUT = 4 * 3600.0


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


def _from_result_link(out: Path) -> str | None:
    result = out / "result"
    if not result.exists():
        return None
    found = sorted(
        str(p) for p in result.rglob("*") if p.is_file() and str(p).endswith(rules.IMAGE_SUFFIXES)
    )
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class ImageBuild:
    """A checked build: its command line, ready to run in ``out``."""

    argv: list[str]
    out: Path

    def run(self) -> str:
        """Build; return the image file's path."""
        try:
            result = Runner().run(self.argv, timeout=BUILD_TIMEOUT, cwd=str(self.out))
        except CommandError as exc:
            tail = (exc.stderr.strip().splitlines() or ["no error output"])[-1]
            raise rules.TemplateError(
                f"nixos-rebuild build-image failed (exit {exc.returncode}): {tail}"
            ) from None
        printed = rules.image_from_output(result.stdout + "\n" + result.stderr)
        # `out /` keeps a printed absolute path as it is.
        image = str(self.out / printed) if printed else _from_result_link(self.out)
        if image is None or not Path(image).is_file():
            raise rules.TemplateError(
                "nixos-rebuild build-image finished but named no image file; "
                f"look in {self.out}/result"
            )
        return image


def prepare_build(
    kind_name: str, *, out: Path, flake: Path | None, ssh_keys: list[Path], config: Path | None
) -> ImageBuild:
    """The build of one template image with ``nixos-rebuild build-image``.

    The guest's SSH keys: the ``ssh_keys`` files, else the inventory's
    ``[templates] ssh_keys``.
    """
    kind = rules.kind(kind_name)
    missing = [p for p in ("nixos-rebuild", "nix") if shutil.which(p) is None]
    if missing:
        raise rules.TemplateError(
            f"`{missing[0]}` is not on PATH: building a NixOS image needs nixos-rebuild "
            "(NixOS 25.05 or later, for build-image) and nix with access to nixpkgs; "
            "run it on a NixOS machine (or in `nix shell nixpkgs#nixos-rebuild`); nothing was built"
        )
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    keys = rules.authorized_keys((str(p), _read(p)) for p in ssh_keys) if ssh_keys else None
    if keys is None and flake is None:
        keys = _inventory_keys(config)
    overrides: list[tuple[str, str]] = []
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
        staged = rules.stage(root / "templates" / kind.name, out / f"flake-{kind.name}", keys)
        uri = f"path:{staged}"
        overrides.append(("nixmox", rules.flake_uri(root)))
    return ImageBuild(rules.build_argv(kind, uri, overrides), out)
