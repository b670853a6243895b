"""What the kit's verbs share: a parser with one-line errors and the checkpoint-trust options."""

from jsonargparse import ArgumentParser

from kit.runner import summarize_parser_error


class VerbParser(ArgumentParser):
    """jsonargparse's parser whose errors start with one line: the key and what is wrong with it."""

    def error(self, message: str, ex: Exception | None = None):
        text = str(message)
        return super().error(f"{summarize_parser_error(text)}\n(details)\n{text}" if "\n" in text else text, ex)


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
