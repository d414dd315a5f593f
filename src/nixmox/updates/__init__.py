"""Transactional updates: the Proxmox host, NixOS guests and Windows.

Every update is snapshot first, update, health check, and an automatic
rollback on failure that the report names.
"""
