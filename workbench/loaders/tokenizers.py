"""Tokenizers for text prompts: a local ``transformers`` tokenizer folder, or bytes.

A tokenizer here is any object with ``name``, ``vocab_size``, ``encode(text) -> ids`` and
``decode(ids) -> text`` (the `Tokenizer` protocol). Two kinds ship, neither downloads:

- `ByteTokenizer`: token id = the UTF-8 byte's value (vocabulary 256), the tokenizer of
  the trained ``llama-stdlib`` sample (its ``card.json`` says ``"tokenizer": "bytes"``);
- `HFTokenizer`: the tokenizer files of a local folder (``tokenizer.json``,
  ``tokenizer_config.json``, ...) read by ``transformers.AutoTokenizer`` with
  ``local_files_only=True`` and no remote code.

`load_tokenizer` resolves what a user names (an object, ``"bytes"``, a folder) and
`model_tokenizer` finds the one a model's own folder holds. transformers is imported
only inside the functions.

Example:
    >>> tok = load_tokenizer("bytes")
    >>> tok.decode(tok.encode("def f():"))
    'def f():'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from workbench.errors import InputError, ModelLoadError

#: files whose presence makes a folder a ``transformers`` tokenizer folder
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@runtime_checkable
class Tokenizer(Protocol):
    """Text to token ids and back.

    Attributes:
        name: what to call it in a profile (``"bytes"``, or the folder's name).
        vocab_size: the number of distinct ids it can produce (ids are below it).
    """

    name: str
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text`` (with the tokenizer's own special tokens, if any)."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (special tokens left out)."""
        ...


class ByteTokenizer:
    """Byte-level: each UTF-8 byte is one token whose id is the byte's value.

    Decoding replaces an incomplete or invalid UTF-8 sequence, and an id that is no
    byte (a model with a larger vocabulary), with U+FFFD, so any ids decode to text.
    """

    name = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        # a non-byte id becomes an invalid byte, so it decodes as U+FFFD as well
        raw = bytes(int(i) if 0 <= int(i) < 256 else 0xFF for i in ids)
        return raw.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class HFTokenizer:
    """A ``transformers`` tokenizer read from a local folder (no download, no remote code).

    Raises:
        ModelLoadError: transformers cannot read the folder's tokenizer files.
    """

    def __init__(self, folder: str | Path) -> None:
        from workbench.loaders.thirdparty import transformers

        path = Path(folder)
        try:
            self.tokenizer = transformers().AutoTokenizer.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            first = " ".join(str(exc).split())[:300]
            raise ModelLoadError(
                f"transformers cannot read the tokenizer in {folder}: {first}"
            ) from exc
        self.name = path.resolve().name
        # len() counts the added tokens as well, which the model must also cover
        self.vocab_size = len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True))

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, vocab_size={self.vocab_size})"


def folder_tokenizer(folder: str | Path) -> Tokenizer | None:
    """The tokenizer a folder holds: its tokenizer files, or bytes when its ``card.json``
    says ``"tokenizer": "bytes"``; None when it holds neither."""
    path = Path(folder)
    if not path.is_dir():
        return None
    if any((path / name).is_file() for name in TOKENIZER_FILES):
        return HFTokenizer(path)
    card = path / "card.json"
    if card.is_file():
        try:
            kind = json.loads(card.read_text()).get("tokenizer")
        except (OSError, ValueError, AttributeError):
            return None
        if kind == "bytes":
            return ByteTokenizer()
    return None


def load_tokenizer(source: Any) -> Tokenizer:
    """A tokenizer from what a user names.

    Args:
        source: a `Tokenizer` (returned as it is), ``"bytes"`` (`ByteTokenizer`), or a
            local folder with tokenizer files (or a byte-level sample's card).

    Raises:
        ModelLoadError: the folder holds no tokenizer, or transformers cannot read it.
        InputError: ``source`` is none of these.
    """
    if isinstance(source, Tokenizer):
        return source
    if not isinstance(source, (str, Path)):
        raise InputError(
            f"tokenizer= takes a folder, 'bytes' or a tokenizer object, not {type(source).__name__}"
        )
    if str(source) == "bytes":
        return ByteTokenizer()
    if not Path(source).is_dir():
        raise ModelLoadError(
            f"no tokenizer folder {source}; give a folder with tokenizer.json "
            "(or tokenizer_config.json), or 'bytes' for a byte-level model"
        )
    found = folder_tokenizer(source)
    if found is None:
        raise ModelLoadError(
            f"{source} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
            "give the folder the model's tokenizer was saved to"
        )
    return found


def model_tokenizer(model: Any) -> Tokenizer | None:
    """The tokenizer in the folder ``model`` (a ``transformers`` model) was loaded from,
    or None (a model built in memory, or a folder without one)."""
    config = getattr(model, "config", None)
    source = getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", "")
    return folder_tokenizer(source) if source else None


def check_vocabulary(tokenizer: Tokenizer, vocab_size: int, model_name: str) -> None:
    """Raise when ``tokenizer`` can produce ids the model's embedding has no row for.

    Raises:
        InputError: one line with both vocabulary sizes.
    """
    if tokenizer.vocab_size > vocab_size:
        raise InputError(
            f"the tokenizer {tokenizer.name!r} has {tokenizer.vocab_size} tokens but "
            f"{model_name}'s vocabulary is {vocab_size}: they do not belong together; "
            "give the model's own tokenizer"
        )
