"""What the kit's verbs share: a parser with one-line errors, the sampling and checkpoint-trust options, and
loading the task of a checkpoint with them."""

import sys

import torch
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveFloat, PositiveInt

from kit.runner import summarize_parser_error


class VerbParser(ArgumentParser):
    """jsonargparse's parser whose errors start with one line: the key and what is wrong with it."""

    def error(self, message: str, ex: Exception | None = None):
        text = str(message)
        return super().error(f"{summarize_parser_error(text)}\n(details)\n{text}" if "\n" in text else text, ex)


def add_sampling_arguments(parser) -> None:
    """The inference settings a verb that generates takes, each the recipe's when omitted: `--steps`,
    `--guidance`, `--shift`, `--seed`, and VERIFI's `--rewrite` and `--system-prompt` (see `load_task`)."""
    parser.add_argument("--steps", type=PositiveInt | None, default=None, help="sampler steps (the recipe's when omitted)")
    parser.add_argument("--guidance", type=float | None, default=None, help="classifier-free guidance scale (the recipe's when omitted)")
    parser.add_argument(
        "--shift",
        type=PositiveFloat | None,
        default=None,
        help="time shift of the sampler's step grid, > 1 spends more steps near noise (the recipe's when omitted)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--rewrite", type=str | None, default=None, help="VERIFI rewriting at inference: on or off (the recipe's setting when omitted)")
    parser.add_argument("--system-prompt", type=str | None, default=None, help="a different VERIFI system prompt at inference")


def add_checkpoint_arguments(parser) -> None:
    """`--encoder-model` and `--trust-checkpoint`: what a verb that loads a checkpoint lets the user vouch for."""
    parser.add_argument(
        "--encoder-model",
        type=str | None,
        default=None,
        help="load the frozen encoder from this name or path instead of the one recorded in the checkpoint "
        "(needed to accept a recorded encoder that is not shipped with the kit)",
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="accept the checkpoint's recorded encoder path and trust_remote_code as they are (only for files you trust)",
    )


def add_model_arguments(parser, action: str) -> None:
    """What a verb that loads a checkpoint and generates takes: the sampling settings, the checkpoint-trust
    options and `--device` (the device to `action` on)."""
    add_sampling_arguments(parser)
    add_checkpoint_arguments(parser)
    parser.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu", help=f"device to {action} on")


def load_task(args):
    """The task in `args.ckpt` with the verb's inference settings (`--rewrite`, `--system-prompt`, `--shift`),
    or None after a one-line error on stderr (a missing, unreadable or unsafe checkpoint)."""
    from kit.encoders.verifi import configure_rewriting
    from kit.loading import load_checkpoint

    try:
        module = load_checkpoint(args.ckpt, map_location=args.device, encoder_model=args.encoder_model, trust=args.trust_checkpoint)
        configure_rewriting(module.encoder, args.rewrite, args.system_prompt)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    if args.shift is not None:
        module.sampler.shift = args.shift
    return module
