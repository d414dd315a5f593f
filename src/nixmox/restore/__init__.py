"""Getting guests back: ``restore`` (one guest) and ``rebuild`` (the whole server).

``choose`` picks the archive (pure), ``verified`` reads what ``backup verify``
recorded, ``job`` restores one guest step by step, ``runs`` is what the CLI
starts and the journal stores, ``rebuild`` plans and runs the whole recovery.
What a copy must not take from the original is ``nixmox.backup.copies``.
"""
