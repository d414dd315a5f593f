"""The lab: a simulated Proxmox VE seeded from examples/homelab.toml, for tests only.

Built on the third-party fakepve (AGPL, a dev dependency): nothing here may be
imported from ``src/``. ``tests.lab.server.Lab`` is the simulated host,
``tests.lab.fixtures`` the pytest fixtures, and ``python -m tests.lab`` serves it
standalone.
"""

from __future__ import annotations
