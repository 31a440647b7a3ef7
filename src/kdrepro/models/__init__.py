"""Architectures: one registry, one constructor signature, hooks for intermediate features.

The package itself loads nothing: the architectures are registered by kdrepro.models.zoo (which what builds
networks imports: torch), and what is known of them without building one (family, depth, options) is in
kdrepro.catalog, which settings, run specs and the papers read.
"""
