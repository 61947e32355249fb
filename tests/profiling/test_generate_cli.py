"""``workbench generate`` and the language-model loaders it uses (no downloads)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workbench.backends.base import register
from workbench.cli import main
from workbench.errors import UnsafeModelError
from workbench.loaders.language import load_causal_lm, random_llama
from workbench.profiling.generate import GenerationProfile
from workbench.testing import FakeBackend

pytest.importorskip("transformers")

FAST = ["--prompt-length", "4", "--output-length", "3", "--runs", "1", "--warmup", "0"]


def test_generate_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.store import Store

    out, store = tmp_path / "gen.json", tmp_path / "runs.sqlite"
    argv = ["generate", "llama-tiny", *FAST, "--batch-size", "2", "--json", str(out)]
    assert main([*argv, "--save", "--store", str(store)]) == 0
    printed = capsys.readouterr().out
    assert "TTFT" in printed and "TPOT" in printed
    g = GenerationProfile.from_json(out)
    (run_id,) = Store(store).runs()["run_id"]
    assert f"saved as run {run_id}" in printed and Store(store).load_generation(run_id) == g
    assert (g.batch_size, g.prompt_length, g.output_length) == (2, 4, 3)
    assert len(g.tokens) == 2 and all(len(row) == 3 for row in g.tokens)
    assert g.kv_cache_bytes_measured == g.kv_cache_bytes


def test_the_trained_sample_by_name_with_a_text_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gen.json"
    argv = ["generate", "llama-stdlib", "--backend", "onnxruntime", *FAST, "--json", str(out)]
    assert main([*argv, "--prompt", "def main(args):"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"tokens vs torch +identical", printed)
    # the sample's card names its byte-level tokenizer: the prompt is its 15 bytes
    g = GenerationProfile.from_json(out)
    assert g.tokenizer == "bytes" and g.prompt_length == len("def main(args):")
    assert g.text is not None and re.search(r"text +" + re.escape(repr(g.text[0])[:20]), printed)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["generate", "llama-tiny", "--output-length", "0"], "--output-length"),
        (["generate", "llama-tiny", "--prompt-length", "300"], "context of 256"),
        (["generate", "no-such-folder"], "not a model folder"),
        (["generate", "llama-tiny", "--prompt", "hello"], "needs a tokenizer"),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_saved_folder_loads_and_pickles_are_refused(tmp_path: Path) -> None:
    model = random_llama("llama-tiny")
    model.save_pretrained(tmp_path / "safe")
    loaded = load_causal_lm(tmp_path / "safe")
    assert type(loaded).__name__ == "LlamaForCausalLM"
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tmp_path / "safe" / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(UnsafeModelError, match="pickled weights"):
        load_causal_lm(pickled)


class _CliDecoding(FakeBackend):
    """A plugin that generates (torch eager underneath)."""

    name = "fake-cli-decoding"

    def decoder(self, model: object, device: str = "cpu", *, threads: object = None) -> object:
        from workbench.backends.torch.decoder import TorchDecoder

        return TorchDecoder(model)


def test_backends_that_generate_come_from_the_registry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    register("fake-cli-decoding")(_CliDecoding)
    assert main(["generate", "llama-tiny", "--backend", "fake-cli-decoding", *FAST]) == 0
    assert "on fake-cli-decoding cpu" in capsys.readouterr().out
    assert main(["generate", "llama-tiny", "--backend", "numba-cuda"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'numba-cuda'" in err and "'torch-compile'" in err
    assert "'numba'" in err
    assert "'fake-cli-decoding'" in err and err.count("\n") == 1
    assert main(["devices"]) == 0
    rows = {
        line.split()[0]: line.split()[1:4]
        for line in capsys.readouterr().out.splitlines()
        if line.split()[:1]
        and line.split()[0] in {"torch-compile", "numba", "numba-cuda", "fake-cli-decoding"}
    }
    # device, available, generates
    assert rows["torch-compile"][2] == "True" and rows["numba"][2] == "True"
    assert rows["numba-cuda"][2] == "False"
    assert rows["fake-cli-decoding"][2] == "True"
