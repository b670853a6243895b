"""The kit's own command-line verbs; each module has `main(argv) -> int`."""
