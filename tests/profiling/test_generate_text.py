"""Text prompts: a byte-level tokenizer, a local tokenizer folder, and their bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.errors import InputError, ModelLoadError
from workbench.loaders.language import load_causal_lm
from workbench.loaders.tokenizers import ByteTokenizer, HFTokenizer, load_tokenizer
from workbench.profiling.generate import GenerationProfile, generate_profile
from workbench.testing import tiny_llama

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")

FAST = {"output_length": 3, "runs": 1, "warmup": 0}
WORDS = ["[UNK]", "def", "main", "return", "args", "(", ")", ":", "x", "y"]


def _llama(vocab: int) -> object:
    return tiny_llama(vocab_size=vocab, context=32)


@pytest.fixture(scope="module")
def byte_llama() -> object:
    return _llama(256)


@pytest.fixture(scope="module")
def word_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model with its own word-level tokenizer files beside the weights."""
    from tokenizers import models, pre_tokenizers

    folder = tmp_path_factory.mktemp("word-llama")
    words = tokenizers.Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, "[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]")
    fast.save_pretrained(folder)
    _llama(len(WORDS)).save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def test_bytes_encode_decode_round_trip() -> None:
    tok = load_tokenizer("bytes")
    assert isinstance(tok, ByteTokenizer)
    assert tok.encode("é(") == [0xC3, 0xA9, 0x28]
    assert tok.decode(tok.encode("def f():\n")) == "def f():\n"
    assert tok.decode([0xC3]) == "\ufffd"  # a cut UTF-8 sequence still decodes
    assert tok.decode([0x61, 300, 0x62]) == "a\ufffdb"  # an id from a larger vocabulary


def test_a_text_prompt_is_its_bytes_and_the_output_is_decoded(byte_llama: object) -> None:
    text = "def f(x):"
    g = generate_profile(byte_llama, prompt=text, tokenizer="bytes", **FAST)  # type: ignore[arg-type]
    by_ids = generate_profile(byte_llama, prompt=[list(text.encode())], **FAST)  # type: ignore[arg-type]
    assert g.tokens == by_ids.tokens and g.prompt_length == len(text)
    assert g.text == (bytes(g.tokens[0]).decode("utf-8", errors="replace"),)
    assert g.tokenizer == "bytes" and g.prompt_text == (text,)
    assert by_ids.text is None  # ids without a tokenizer: no text, and no error
    back = GenerationProfile.from_json(g.to_json())
    assert back.text == g.text and back.prompt_text == g.prompt_text
    assert "text " in g.summary()


def test_a_batch_of_texts_on_onnxruntime(byte_llama: object) -> None:
    g = generate_profile(
        byte_llama,  # type: ignore[arg-type]
        backend="onnxruntime",
        prompt=["abcd", "wxyz"],
        tokenizer=ByteTokenizer(),
        **FAST,  # type: ignore[arg-type]
    )
    assert g.batch_size == 2 and g.text is not None and len(g.text) == 2
    assert g.diverges_at is None


def test_the_model_folder_tokenizer_is_found(word_folder: Path) -> None:
    model = load_causal_lm(word_folder)
    g = generate_profile(model, prompt="def main ( args ) :", **FAST)  # type: ignore[arg-type]
    tok = HFTokenizer(word_folder)
    assert g.tokenizer == word_folder.name and g.prompt_length == 6
    assert g.text == (tok.decode(g.tokens[0]),)
    assert set(g.text[0].split()) <= set(WORDS[1:]) | {""}


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"prompt": "def"}, InputError, "needs a tokenizer.*or give token ids"),
        ({"prompt": ["ab", "abc"], "tokenizer": "bytes"}, InputError, r"lengths \[2, 3\] \(tokens"),
        ({"prompt": "x", "tokenizer": "no-such-dir"}, ModelLoadError, "no tokenizer folder"),
        ({"prompt": "x", "tokenizer": 3}, InputError, "tokenizer= takes"),
    ],
)
def test_bad_text_input_is_one_line(
    byte_llama: object, kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words) as caught:
        generate_profile(byte_llama, **kwargs, **FAST)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path: Path) -> None:
    small = _llama(100)
    with pytest.raises(InputError, match=r"256 tokens but .*vocabulary is 100") as caught:
        generate_profile(small, prompt="x", tokenizer="bytes", **FAST)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="holds no tokenizer"):
        load_tokenizer(tmp_path)
