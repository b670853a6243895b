"""Captions -> scene specifications: the inverse of `kit.world.captions`.

Reads every register the captioner writes (detailed, short, relation, count) and the
evaluation prompts built from them. What it cannot read raises `CaptionParseError`
naming the phrase, so a scorer never silently scores against a wrong specification.
"""

from __future__ import annotations

import re

from kit.world.captions import CELL_NAMES, DETAILED_PREFIXES, NUMBERS, PLACE_PHRASES, plural
from kit.world.scene import COLOURS, SHAPES, SIZES
from kit.world.spec import ObjectSpec, Relation, SceneSpec


class CaptionParseError(ValueError):
    """A caption (or one phrase of it) that the shapes-world grammar does not cover."""


ARTICLES = {"a": 1, "an": 1, **{word: n for n, word in NUMBERS.items()}}
SHAPE_WORDS = {**{s: (s, False) for s in SHAPES}, **{plural(s): (s, True) for s in SHAPES}}

RELATION_WORDS: list[tuple[str, str]] = [
    # (words between the two noun phrases, relation of the first to the second); longest first
    (" to the left of ", "left of"),
    (" to the right of ", "right of"),
    (" left of ", "left of"),
    (" right of ", "right of"),
    (" above ", "above"),
    (" over ", "above"),
    (" below ", "below"),
]


def _place_phrases() -> dict[str, tuple[int, int]]:
    """Every place phrase the captioner can write -> its cell."""
    phrases = {}
    for cell, name in CELL_NAMES.items():
        kind = "corner" if " " in name else name
        for template in PLACE_PHRASES[kind]:
            phrases[template.format(name)] = cell
    return phrases


PLACES = _place_phrases()
_PLACE_ALTERNATIVES = "|".join(sorted(map(re.escape, PLACES), key=len, reverse=True))
_NOUN_PHRASE = re.compile(
    rf"^(?P<article>{'|'.join(ARTICLES)})"
    rf"(?: (?P<size>{'|'.join(SIZES)}))?"
    rf"(?: (?P<colour>{'|'.join(COLOURS)}))?"
    rf" (?P<shape>{'|'.join(sorted(SHAPE_WORDS, key=len, reverse=True))})"
    rf"(?: (?P<place>{_PLACE_ALTERNATIVES}))?$"
)
_PREFIXES = sorted((p for p in DETAILED_PREFIXES if p), key=len, reverse=True)


def parse_noun_phrase(phrase: str, caption: str | None = None) -> ObjectSpec:
    """'two large red circles', 'a blue square in the top left', ... -> `ObjectSpec`."""
    m = _NOUN_PHRASE.match(phrase)
    where = f" in {caption!r}" if caption is not None and caption != phrase else ""
    if m is None:
        raise CaptionParseError(
            f"cannot parse the phrase {phrase!r}{where}: expected '<a|an|one..four> [size] [colour] <shape> [place]' "
            f"with sizes {list(SIZES)}, colours {list(COLOURS)}, shapes {list(SHAPES)}"
        )
    count = ARTICLES[m["article"]]
    shape, is_plural = SHAPE_WORDS[m["shape"]]
    if is_plural != (count > 1):
        raise CaptionParseError(f"number mismatch in the phrase {phrase!r}{where}: {m['article']!r} with {m['shape']!r}")
    return ObjectSpec(
        shape=shape,
        colour=m["colour"],
        size=m["size"],
        cell=PLACES[m["place"]] if m["place"] else None,
        count=count,
        exact=m["article"] not in ("a", "an"),
    )


def parse_caption(caption: str) -> SceneSpec:
    """A caption or prompt of the shapes world -> the `SceneSpec` it asks for.

    A description in which every object has a size, a colour and a place (the detailed
    register) is exhaustive: it lists the whole scene.
    """
    text = " ".join(caption.strip().lower().rstrip(".").split())
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if not text:
        raise CaptionParseError(f"the caption {caption!r} names no object")
    for words, rel in RELATION_WORDS:
        if words in text:
            first, second = text.split(words, 1)
            a, b = parse_noun_phrase(first, caption), parse_noun_phrase(second, caption)
            if a.count != 1 or b.count != 1:
                raise CaptionParseError(f"a relation needs single objects on both sides in {caption!r}")
            return SceneSpec(objects=(a, b), relations=(Relation(0, rel, 1),))
    objects = tuple(parse_noun_phrase(part, caption) for part in re.split(r", | and ", text))
    exhaustive = all(o.size and o.colour and o.cell for o in objects)
    return SceneSpec(objects=objects, exhaustive=exhaustive)
