"""Module layouts for neural module networks: from a question's parse to a program.

Andreas et al. (CVPR 2016) turn a question into a *layout*, a tree of modules, from its
parse: nouns and adjectives become ``find`` modules, prepositions ``relate`` (their
"transform"), conjunction of properties ``and``, and the question's head the answer
module, ``exists`` ("is there ...") or ``describe`` ("is the ... red?"). Here a layout is
a nested tuple::

    ("find", word)                  attend to the cells ``word`` describes
    ("relate", word, child)         shift ``child``'s attention: "above" the attended cells
    ("and", left, right)            cells both attend to
    ("exists", child)               answer: is any cell attended?
    ("describe", word, child)       answer: does ``word`` describe the attended cell?

The parser reads the questions of :mod:`vj_dynamic.bench.shapes` with a small grammar::

    question := "is there a" phrase [relation "a" phrase]  |  "is the" phrase property
    phrase   := colour "shape" | colour shape | shape
    property := colour | "a" shape
    relation := "above" | "below" | "left of" | "right of"

Layouts with the same *structure* (the tree with its words blanked) run as one batch:
:func:`layout_structure` splits a layout into that structure and its words, in
pre-order, and :func:`group_layouts` groups questions by structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Layout",
    "Lexicon",
    "SHAPES_LEXICON",
    "group_layouts",
    "layout_structure",
    "layout_to_text",
    "parse_question",
]

#: A module tree; see the module docstring for its forms.
Layout = tuple

_ARITY = {"find": (1, 0), "relate": (1, 1), "and": (0, 2), "exists": (0, 1), "describe": (1, 1)}


@dataclass(frozen=True)
class Lexicon:
    """The words the parser knows, by role.

    Attributes
    ----------
    colours : tuple of str
        Adjectives that can also stand alone as ``<colour> shape``.
    shapes : tuple of str
        Nouns.
    relations : tuple of str
        Spatial relations; a relation may be two words (``"left of"``).
    """

    colours: tuple[str, ...]
    shapes: tuple[str, ...]
    relations: tuple[str, ...]

    @property
    def module_words(self) -> tuple[str, ...]:
        """Every word a module can take, in a fixed order (the modules' word indices)."""
        return (*self.colours, *self.shapes, *self.relations)


def _shapes_lexicon() -> Lexicon:
    from vj_dynamic.bench.shapes import COLOURS, RELATIONS, SHAPES

    return Lexicon(tuple(COLOURS), tuple(SHAPES), tuple(RELATIONS))


#: The lexicon of the SHAPES questions (:mod:`vj_dynamic.bench.shapes`).
SHAPES_LEXICON = _shapes_lexicon()


class _Tokens:
    """A cursor over a question's words that reports parse errors with their position."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.words = text.lower().replace("?", " ").split()
        self.at = 0

    def peek(self, n: int = 1) -> str:
        return " ".join(self.words[self.at:self.at + n])

    def take(self, expected: str) -> None:
        n = len(expected.split())
        if self.peek(n) != expected:
            self.fail(f"expected {expected!r}")
        self.at += n

    def fail(self, what: str) -> None:
        got = self.peek() or "the end"
        raise ValueError(f"cannot parse {self.text!r}: {what} at word {self.at + 1}, got {got!r}")


def _phrase(tokens: _Tokens, lexicon: Lexicon) -> Layout:
    word = tokens.peek()
    if word in lexicon.colours:
        tokens.at += 1
        if tokens.peek() == "shape":
            tokens.at += 1
            return ("find", word)
        noun = tokens.peek()
        if noun not in lexicon.shapes:
            tokens.fail("expected 'shape' or a shape after a colour")
        tokens.at += 1
        return ("and", ("find", word), ("find", noun))
    if word in lexicon.shapes:
        tokens.at += 1
        return ("find", word)
    tokens.fail("expected a colour or a shape")
    raise AssertionError  # fail() raises


def _relation(tokens: _Tokens, lexicon: Lexicon) -> str | None:
    for relation in lexicon.relations:
        n = len(relation.split())
        if tokens.peek(n) == relation:
            tokens.at += n
            return relation
    return None


def parse_question(text: str, lexicon: Lexicon | None = None) -> Layout:
    """The module layout of a yes/no question.

    Parameters
    ----------
    text : str
        A question such as ``"is there a red shape above a circle"`` (case and a
        trailing question mark are ignored).
    lexicon : Lexicon, optional
        Known words (default: :data:`SHAPES_LEXICON`).

    Returns
    -------
    Layout

    Raises
    ------
    ValueError
        When the question does not follow the grammar; the message names the word.

    Examples
    --------
    >>> parse_question("is there a red shape above a circle")
    ('exists', ('and', ('find', 'red'), ('relate', 'above', ('find', 'circle'))))
    >>> parse_question("is the square green")
    ('describe', 'green', ('find', 'square'))
    """
    lexicon = lexicon or SHAPES_LEXICON
    tokens = _Tokens(text)
    tokens.take("is")
    if tokens.peek() == "there":
        tokens.take("there a")
        subject = _phrase(tokens, lexicon)
        relation = _relation(tokens, lexicon)
        if relation is not None:
            tokens.take("a")
            subject = ("and", subject, ("relate", relation, _phrase(tokens, lexicon)))
        layout: Layout = ("exists", subject)
    else:
        tokens.take("the")
        subject = _phrase(tokens, lexicon)
        if tokens.peek() == "a":
            tokens.at += 1
            word = tokens.peek()
            if word not in lexicon.shapes:
                tokens.fail("expected a shape")
        else:
            word = tokens.peek()
            if word not in lexicon.colours:
                tokens.fail("expected a colour or 'a' and a shape")
        tokens.at += 1
        layout = ("describe", word, subject)
    if tokens.at != len(tokens.words):
        tokens.fail("expected the end of the question")
    return layout


def layout_structure(layout: Layout) -> tuple[Layout, tuple[str, ...]]:
    """Split a layout into its structure (words replaced by ``None``) and its words.

    Words are listed in pre-order: a module's own word before its children's.

    Examples
    --------
    >>> layout_structure(("exists", ("and", ("find", "red"), ("find", "circle"))))
    (('exists', ('and', ('find', None), ('find', None))), ('red', 'circle'))
    """
    if not isinstance(layout, tuple) or not layout or layout[0] not in _ARITY:
        raise ValueError(f"not a module layout: {layout!r}")
    n_words, n_children = _ARITY[layout[0]]
    if len(layout) != 1 + n_words + n_children:
        raise ValueError(f"module {layout[0]!r} takes {n_words} word(s) and {n_children} "
                         f"input(s), got {layout!r}")
    words = list(layout[1:1 + n_words])
    children = []
    for child in layout[1 + n_words:]:
        structure, child_words = layout_structure(child)
        children.append(structure)
        words.extend(child_words)
    return (layout[0], *([None] * n_words), *children), tuple(words)


def layout_to_text(layout: Layout) -> str:
    """A layout in the paper's notation, e.g. ``exists(and(find[red], find[circle]))``."""
    kind = layout[0]
    n_words, _ = _ARITY[kind]
    word = f"[{layout[1]}]" if n_words and layout[1] is not None else ""
    inner = ", ".join(layout_to_text(child) for child in layout[1 + n_words:])
    return f"{kind}{word}({inner})" if inner else f"{kind}{word}"


def group_layouts(
    layouts: Sequence[Layout], words: Sequence[str]
) -> dict[Layout, tuple[np.ndarray, np.ndarray]]:
    """Group questions whose layouts share a structure.

    Parameters
    ----------
    layouts : sequence of Layout
    words : sequence of str
        The module words; a layout's words become indices into it.

    Returns
    -------
    dict of structure to (indices, word_ids)
        ``indices`` ``(n,)`` int64: the questions of the group, in input order;
        ``word_ids`` ``(n, n_slots)`` int64: their words, in pre-order.
    """
    lookup = {w: i for i, w in enumerate(words)}
    members: dict[Layout, list[int]] = {}
    slots: dict[Layout, list[list[int]]] = {}
    for i, layout in enumerate(layouts):
        structure, layout_words = layout_structure(layout)
        try:
            ids = [lookup[w] for w in layout_words]
        except KeyError as error:
            raise ValueError(f"layout {i} uses the unknown word {error.args[0]!r}") from None
        members.setdefault(structure, []).append(i)
        slots.setdefault(structure, []).append(ids)
    return {
        s: (np.asarray(members[s], np.int64),
            np.asarray(slots[s], np.int64).reshape(len(members[s]), -1))
        for s in members
    }
