"""`python -m kit registry`: the registered parts, with their recipe `class_path`."""

from __future__ import annotations

from kit.backbones import BACKBONES
from kit.fusion import FUSION_HEADS

HELP = "list the registered fusion heads and backbones"


def main(argv: list[str]) -> int:
    for registry in (FUSION_HEADS, BACKBONES):
        print(f"{registry.family}s:")
        for name, cls in registry.items():
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            print(f"  {name:<12} {cls.__module__}.{cls.__qualname__:<18} {doc}")
    return 0
