"""The conformance suite, on every available backend."""

from pools.testing.conformance import PoolConformance


class TestConformance(PoolConformance):
    pass
