"""`python -m kit`: the Lightning verbs (fit, validate, test, predict; `kit.runner`) plus the kit's own (`kit.verbs`).

Recipes are YAML files of `class_path`/`init_args` blocks; `-c a.yaml -c b.yaml` composes them left to
right (see `kit.runner`). The kit's verbs are modules of `kit.verbs`, each with `HELP` and `main(argv)`.
"""

from __future__ import annotations

import sys

from kit.runner import LIGHTNING_VERBS, ConfigurationError, KitArgumentParser, KitCLI, run_cli, summarize_parser_error
from kit.verbs import VERBS

__all__ = ["KIT_VERBS", "LIGHTNING_VERBS", "ConfigurationError", "KitArgumentParser", "KitCLI", "main", "run_cli", "summarize_parser_error", "usage"]

KIT_VERBS = {name: module.HELP for name, module in VERBS.items()}
"""The kit's own verbs and their one-line help."""


def usage() -> str:
    width = max(map(len, [*LIGHTNING_VERBS, *KIT_VERBS]))
    lines = ["usage: python -m kit VERB [options]   (python -m kit VERB --help for a verb's options)", "", "Lightning verbs:"]
    lines += [f"  {v:<{width}}  {h}" for v, h in LIGHTNING_VERBS.items()]
    lines += ["", "kit verbs:"]
    lines += [f"  {v:<{width}}  {h}" for v, h in KIT_VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch `python -m kit VERB ...` to a kit verb or to the Lightning CLI."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    verb = argv[0]
    if verb in KIT_VERBS:
        return int(VERBS[verb].main(argv[1:]) or 0)
    if verb in LIGHTNING_VERBS:
        from kit.encoders.cache import CacheMismatchError

        try:
            cli = run_cli(None if argv == sys.argv[1:] else argv)
        except ConfigurationError as e:
            print(f"error: the recipe cannot be built: {e}", file=sys.stderr)
            return 2
        except CacheMismatchError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        stopped = getattr(cli.model, "stopped", None)
        if stopped:
            print(f"error: {stopped}", file=sys.stderr)
            return 1
        return 0
    print(f"error: unknown verb {verb!r}; the verbs are {', '.join([*LIGHTNING_VERBS, *KIT_VERBS])}\n\n{usage()}", file=sys.stderr)
    return 2
