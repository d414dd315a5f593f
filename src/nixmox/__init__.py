"""nixmox: a home Proxmox VE server with NixOS and Windows guests, declared and self-maintaining."""

__version__ = "0.1.0"
