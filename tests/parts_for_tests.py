"""Parts used only by the tests, importable by class_path from recipes built in tests."""

from kit.fusion.base import FusionHead


class PooledOnlyHead(FusionHead):
    """A head that provides only a pooled vector (no tokens)."""

    provides = frozenset({"pooled"})

    def forward(self, enc):
        raise NotImplementedError("never called: the pairing is refused at build time")
