"""The jobs: each one reads actual state, decides with the pure modules, acts."""
