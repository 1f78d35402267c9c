"""Cluster mode: many engines over one PostgreSQL database, each owning a share of its shards (docs/cluster.md).

``config`` (the public :class:`Cluster` settings) imports nothing beyond the
standard library; ``store``, the parts it wires and ``handle`` need asyncpg,
imported only when an engine with ``cluster=`` is built.
"""
