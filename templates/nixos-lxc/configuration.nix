# A NixOS Proxmox container. Proxmox creates it from the image
# `nixmox template build nixos-lxc` makes (ostype=nixos, unprivileged=1,
# features nesting=1: systemd and the nix sandbox need it), and writes its
# network and hostname from the guest's settings (net0, hostname).
{ lib, modulesPath, ... }:

{
  # In the configuration itself, not only in the image: a later
  # `nixos-rebuild switch` on the guest keeps these settings.
  imports = [ (modulesPath + "/virtualisation/proxmox-lxc.nix") ];

  proxmoxLXC = {
    enable = true;
    privileged = false;
    # Proxmox owns the network and the hostname (the inventory's net0 and
    # name); set these to true to manage them here instead.
    manageNetwork = false;
    manageHostName = false;
  };

  time.timeZone = lib.mkDefault "UTC";
  system.stateVersion = "25.05";
}
