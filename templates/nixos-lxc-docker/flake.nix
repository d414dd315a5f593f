{
  description = "nixmox template: NixOS in a Proxmox LXC that runs Docker containers (nesting + keyctl)";

  inputs = {
    # A NixOS release with nixpkgs' Proxmox image modules; override with
    # --override-input nixpkgs URI, or edit this line in your copy.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    # nixmox's flake, for nixosModules.guest (the guest profile and services.nixmox).
    # `nixmox template build` points it at the nixmox it runs from; in the copy a
    # guest updates from (/etc/nixos), name where you keep nixmox (docs/nixos.md).
    nixmox.url = "github:OWNER/nixmox";
    nixmox.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs = { self, nixpkgs, nixmox }:
    let
      inherit (nixpkgs) lib;
      # One public key a line (`nixmox template build --ssh-key FILE` writes it).
      keyFile = ./authorized_keys;
      keys = lib.optionals (builtins.pathExists keyFile)
        (builtins.filter (line: line != "" && builtins.substring 0 1 line != "#")
          (lib.splitString "\n" (builtins.readFile keyFile)));
    in
    {
      nixosConfigurations.nixos-lxc-docker = lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          nixmox.nixosModules.guest
          ./configuration.nix
          { nixmox.guest.authorizedKeys = keys; }
        ];
      };
    };
}
