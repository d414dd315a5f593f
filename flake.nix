{
  description = "nixmox: a home Proxmox VE lab with NixOS guests and a Windows gaming VM, from one inventory";

  # Checks that need no nixpkgs run offline with
  #   --override-input nixpkgs path:STUB   (see tests/test_nix.py).
  # No flake.lock is committed yet (it needs GitHub): docs/nixos.md says how to
  # make one; `nixmox template build` does not read it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      # `nix run .#JOB` runs one job the way its timer does.
      jobs = {
        snapshot = [ "snapshot" ];
        backup = [ "backup" ];
        backup-verify = [ "backup" "verify" ];
        update-host = [ "update" "host" ];
        update-nixos = [ "update" "nixos" ];
        update-windows = [ "update" "windows" ];
      };
    in
    {
      packages = forAllSystems (system: pkgs: rec {
        nixmox = pkgs.callPackage ./nix/package.nix { };
        default = nixmox;
      });

      apps = forAllSystems (system: pkgs:
        let
          nixmox = self.packages.${system}.default;
          app = program: { type = "app"; inherit program; };
          job = name: args: app "${pkgs.writeShellScript "nixmox-${name}" ''
            exec ${nixmox}/bin/nixmox ${lib.escapeShellArgs args} "$@"
          ''}";
        in
        { nixmox = app "${nixmox}/bin/nixmox"; default = app "${nixmox}/bin/nixmox"; }
        // lib.mapAttrs job jobs);

      devShells = forAllSystems (system: pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (ps: with ps; [
              # nixmox's dependencies, then the dev extra (fakepve: test-only, AGPL)
              typer pydantic rich proxmoxer requests tomlkit prometheus-client apprise
              pytest hypothesis mypy types-requests jsonschema
              (ps.callPackage ./nix/fakepve.nix { })
            ]))
            pkgs.ruff
            pkgs.git
            pkgs.nix
            pkgs.systemd # systemd-analyze for the unit tests
            pkgs.openssh
            pkgs.libfaketime
            pkgs.chromium # opens the HTML diagram page headless
            # The metrics tests' real peers: Prometheus (promtool), node_exporter and
            # pve-exporter (a program in nixpkgs, not a Python library here).
            pkgs.prometheus
            pkgs.prometheus-node-exporter
            pkgs.prometheus-pve-exporter
          ];
          shellHook = ''export PYTHONPATH=$PWD/src''${PYTHONPATH:+:$PYTHONPATH}'';
        };
      });

      nixosModules.default = ./nix/module.nix;
      nixosModules.nixmox = ./nix/module.nix;
      # For a NixOS guest: the nixmox guest profile (SSH keys, what the
      # update job checks, optional self-update) with services.nixmox.
      nixosModules.guest = { imports = [ ./nix/module.nix ./templates/profile/nixmox-guest.nix ]; };

      # `nix flake init -t .#nixos-lxc`; `nixmox template build KIND` builds them.
      templates = {
        nixos-lxc = { path = ./templates/nixos-lxc; description = "NixOS in a Proxmox LXC"; };
        nixos-lxc-docker = {
          path = ./templates/nixos-lxc-docker;
          description = "NixOS in a Proxmox LXC for Docker/Podman (nesting, keyctl)";
        };
        nixos-vm = { path = ./templates/nixos-vm; description = "NixOS in a Proxmox VM"; };
      };

      # Both need a real nixpkgs (they build and evaluate NixOS): `nix flake check`.
      checks = forAllSystems (system: pkgs: {
        tests = pkgs.callPackage ./nix/tests.nix { nixmox = self.packages.${system}.default; };
        module-eval = import ./nix/module-check.nix {
          inherit lib pkgs system;
          inherit (pkgs) runCommand;
          inherit (lib) nixosSystem;
          module = self.nixosModules.default;
        };
      });
    };
}
