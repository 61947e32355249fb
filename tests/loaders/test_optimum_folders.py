"""Optimum's ONNX decoder folders as generation models, under the trust rules.

The folders are written here in optimum's layout (``optimum-cli export onnx --task
text-generation-with-past``): the workbench's own export with every position's logits,
its cache inputs renamed ``past_key_values.<layer>.key|value`` and its node names
scoped from the model itself (no wrapper), beside the model's ``config.json`` and
``generation_config.json``; and one folder exported by optimum itself (optimum-onnx
pins transformers < 4.58, so setup puts it in an overlay environment whose command line
the test runs; docs/generate.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import InputError, ModelLoadError, UnsafeModelError, UnsupportedModelError
from workbench.loaders.optimum import load_optimum
from workbench.profiling.generate import generate_profile
from workbench.testing import tiny_llama

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

PROMPT, OUTPUT = 8, 4


def _llama(vocab_size: int = 100) -> object:
    return tiny_llama(vocab_size=vocab_size, context=16)


def optimum_layout(model: object, folder: Path) -> Path:
    """Write ``model`` into ``folder`` as optimum's text-generation-with-past export."""
    from workbench.loaders.causal_lm import export_decoder

    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "raw.onnx"
    lm = export_decoder(model, raw, logits_to_keep=0)
    proto = onnx.load(str(raw))
    raw.unlink()
    renamed = {
        f"past.{i}.{kv}": f"past_key_values.{i}.{kv}"
        for i in range(lm.layers)
        for kv in ("key", "value")
    }
    graph = proto.graph
    for value in [*graph.input, *graph.value_info]:
        value.name = renamed.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        # optimum exports the model itself: its scopes start at the model's children
        if node.name.startswith("/model/"):
            node.name = node.name[len("/model") :]
    onnx.save(proto, str(folder / "model.onnx"))
    model.config.to_json_file(str(folder / "config.json"))  # type: ignore[attr-defined]
    model.generation_config.to_json_file(str(folder / "generation_config.json"))  # type: ignore[attr-defined]
    return folder


def first_pass(session: object) -> dict[str, np.ndarray]:
    """A decoder session's feeds for the prompt's pass: ``PROMPT`` tokens, an empty cache."""
    feeds = {
        "input_ids": np.arange(PROMPT, dtype=np.int64)[None],
        "attention_mask": np.ones((1, PROMPT), np.int64),
        "position_ids": np.arange(PROMPT, dtype=np.int64)[None],
    }
    empty = np.zeros((1, 2, 0, 8), np.float32)
    names = [i.name for i in session.get_inputs()]  # type: ignore[attr-defined]
    return feeds | {name: empty for name in names if name.startswith("past_")}


@pytest.fixture(scope="module")
def llama() -> object:
    return _llama()


@pytest.fixture(scope="module")
def exported(llama: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return optimum_layout(llama, tmp_path_factory.mktemp("optimum") / "llama-onnx")


def _copy(exported: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / exported.name))


def test_onnxruntime_generates_from_the_folder_with_torchs_tokens_and_layers(
    llama: object, exported: Path
) -> None:
    m = load_optimum(exported, reference=llama)
    assert m.lm_facts.cache_names[0][:2] == ["past_key_values.0.key", "past_key_values.0.value"]
    before = sorted(p.name for p in exported.iterdir())
    g = generate_profile(
        m, backend="onnxruntime", prompt_length=PROMPT, output_length=OUTPUT, runs=2,
        warmup=0, layers=True,
    )  # fmt: skip
    assert g.reference_backend == "torch" and g.diverges_at is None
    assert g.kv_cache_bytes_measured == g.kv_cache_bytes
    # the graph's initializers: the torch weights, less the norms' (all ones here, so the
    # exporter keeps one copy of the 5 identical vectors of 32)
    params = sum(p.numel() * 4 for p in llama.parameters())  # type: ignore[attr-defined]
    assert params - 4 * 32 * 4 <= g.weights_bytes <= params
    # the nodes land on the torch model's module paths (no wrapper scope to strip)
    timed = set(g.decode_layers["layer"])
    assert {"lm_head", "model.layers.0.self_attn.q_proj", "model.norm"} <= timed
    assert {f"model.layers.{i}.self_attn.cache_update" for i in (0, 1)} <= timed
    assert g.layers_tpot is not None and g.layers_tpot.n == 2
    # the model's folder is left as it was (the per-layer copy goes to the decoder's own)
    assert sorted(p.name for p in exported.iterdir()) == before


def test_numba_generates_from_the_folder_named_by_path(
    llama: object, exported: Path, tmp_path: Path
) -> None:
    folder = _copy(exported, tmp_path)
    llama.save_pretrained(folder / "weights", safe_serialization=True)  # type: ignore[attr-defined]
    for file in (folder / "weights").iterdir():  # the source's safetensors beside the export
        if file.suffix == ".safetensors":
            shutil.move(str(file), folder / file.name)
    shutil.rmtree(folder / "weights")
    # optimum copies the tokenizer's files into the folder: a text prompt goes through them
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(100)}, "w0"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=words, unk_token="w0").save_pretrained(
        folder
    )
    g = generate_profile(
        str(folder), backend="numba", prompt="w5 w6 w7 w8 w9", output_length=OUTPUT, runs=1,
        warmup=0, layers=True,
    )  # fmt: skip
    assert g.model == "llama-onnx optimum"
    assert g.tokenizer == folder.name and g.prompt_length == 5
    # decoded by the folder's tokenizer (w0, its unknown token, is special: left out)
    assert g.text == (" ".join(f"w{t}" for t in g.tokens[0] if t),)
    assert g.reference_backend == "torch" and g.diverges_at is None  # the folder's weights
    assert {"lm_head", "model.layers.1.self_attn.cache_update"} <= set(g.decode_layers["layer"])
    assert g.layers_tpot is not None and g.layers_tpot.n == 1


def test_the_cli_generates_from_the_folder_on_its_own_runtime(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from workbench.cli import main

    assert main(["generate", str(exported), "--prompt-length", "4", "--output-length", "3",
                 "--runs", "1", "--warmup", "0"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "llama-onnx optimum generation on onnxruntime cpu" in out
    assert "tokens not checked" in out and "load_optimum(folder, reference=" in out
    assert main(["generate", str(exported), "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert "runs on onnxruntime, numba, not torch" in err and err.count("\n") == 1


def test_a_file_that_is_not_data_needs_trust(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path)
    (folder / "modeling_llama.py").write_text("import os\n")
    with pytest.raises(UnsafeModelError) as caught:
        load_optimum(folder)
    message = str(caught.value)
    assert "modeling_llama.py" in message and "trust=True" in message and "\n" not in message
    assert load_optimum(folder, trust=True).lm_facts.layers == 2


def test_external_data_outside_the_folder_needs_trust(exported: Path, tmp_path: Path) -> None:
    folder = _copy(exported, tmp_path)
    proto = onnx.load(str(folder / "model.onnx"))
    onnx.save(proto, str(folder / "model.onnx"), save_as_external_data=True,
              location="model.onnx_data", size_threshold=0)  # fmt: skip
    assert load_optimum(folder).lm_facts.weights_bytes > 0  # inside: data, loads untrusted
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(str(folder / "model.onnx_data"), elsewhere / "model.onnx_data")
    proto = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere/model.onnx_data"
    (folder / "model.onnx").write_bytes(proto.SerializeToString())
    with pytest.raises(UnsafeModelError) as caught:
        load_optimum(folder)
    message = str(caught.value)
    assert "../elsewhere/model.onnx_data" in message and "trust=True" in message
    assert "\n" not in message
    assert load_optimum(folder, trust=True).lm_facts.weights_bytes > 0


def test_what_is_not_an_optimum_decoder_is_one_line(
    exported: Path, tmp_path: Path, llama: object
) -> None:
    with pytest.raises(ModelLoadError, match=r"not an optimum decoder folder"):
        load_optimum(tmp_path)
    folder = _copy(exported, tmp_path)
    proto = onnx.load(str(folder / "model.onnx"))
    flag = onnx.helper.make_tensor_value_info("use_cache_branch", onnx.TensorProto.BOOL, [1])
    proto.graph.input.append(flag)
    onnx.save(proto, str(folder / "model.onnx"))
    with pytest.raises(UnsupportedModelError, match=r"use_cache_branch input that does not"):
        load_optimum(folder)
    shutil.rmtree(folder)
    folder = _copy(exported, tmp_path)
    config = (folder / "config.json").read_text()
    (folder / "config.json").write_text(
        config.replace('"num_key_value_heads": 2', '"num_key_value_heads": 4')
    )
    with pytest.raises(ModelLoadError, match=r"do not belong together"):
        load_optimum(folder)
    with pytest.raises(InputError, match=r"is not the model .* was exported from"):
        load_optimum(exported, reference=_llama(vocab_size=64))


def test_the_runtimes_read_the_last_of_every_positions_logits(
    llama: object, exported: Path
) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported / "model.onnx"))
    feeds = first_pass(session)
    logits = session.run(["logits"], feeds)[0]
    assert logits.shape == (1, PROMPT, 100)  # optimum's layout: every position
    with torch.no_grad():
        expected = llama(torch.from_numpy(feeds["input_ids"])).logits.numpy()  # type: ignore[operator]
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def merged_layout(folder: Path) -> Path:
    """Turn an optimum folder's ``model.onnx`` into the legacy ``decoder_model_merged.onnx``:
    an ``If`` on ``use_cache_branch`` whose two branches are the decoder (optimum's are the
    decoders with and without a cache; either runs a first pass here)."""
    from onnx import helper

    proto = onnx.load(str(folder / "model.onnx"))
    graph = proto.graph

    def branch(tag: str) -> onnx.GraphProto:
        # a branch's values are its own: none may shadow the outer graph's
        made = {out for node in graph.node for out in node.output}
        nodes = []
        for node in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[:] = [f"{tag}/{n}" if n in made else n for n in node.input]
            copy.output[:] = [f"{tag}/{n}" for n in node.output]
            nodes.append(copy)
        typed = [helper.make_empty_tensor_value_info(f"{tag}/{v.name}") for v in graph.output]
        return helper.make_graph(nodes, tag, [], typed)

    flag = helper.make_tensor_value_info("use_cache_branch", onnx.TensorProto.BOOL, [1])
    choose = helper.make_node(
        "If", ["use_cache_branch"], [v.name for v in graph.output], name="optimum::if",
        then_branch=branch("with_past"), else_branch=branch("without_past"),
    )  # fmt: skip
    merged = helper.make_graph(
        [choose], graph.name, [*graph.input, flag], list(graph.output), list(graph.initializer)
    )
    out = helper.make_model(merged, opset_imports=list(proto.opset_import))
    out.ir_version = proto.ir_version
    (folder / "model.onnx").unlink()
    onnx.save(out, str(folder / "decoder_model_merged.onnx"))
    return folder


def test_a_legacy_merged_decoder_runs_through_its_cache_branch(
    llama: object, exported: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    folder = merged_layout(_copy(exported, tmp_path))
    # the folder is a valid merged decoder: ORT runs it as it is, on either branch
    session = ort.InferenceSession(str(folder / "decoder_model_merged.onnx"))
    feeds = first_pass(session)
    for flag in (True, False):
        logits = session.run(["logits"], {**feeds, "use_cache_branch": np.array([flag])})[0]
        assert logits.shape == (1, PROMPT, 100)
    before = sorted(p.name for p in folder.iterdir())
    m = load_optimum(folder, reference=llama)
    assert m.legacy and m.path.name == "decoder_model_merged.onnx"
    for backend in ("onnxruntime", "numba"):
        g = generate_profile(
            m, backend=backend, prompt_length=PROMPT, output_length=OUTPUT, runs=1, warmup=0
        )
        assert g.reference_backend == "torch" and g.diverges_at is None, backend
    assert sorted(p.name for p in folder.iterdir()) == before  # written to its own scratch


#: optimum's own command line, in the overlay environment setup makes (optimum-onnx pins
#: transformers < 4.58, so it lives beside this one's packages with its own transformers)
OPTIMUM_CLI = Path(__file__).parents[2] / ".venv-optimum" / "bin" / "optimum-cli"


@pytest.mark.skipif(not OPTIMUM_CLI.exists(), reason="no .venv-optimum (scripts/setup.sh)")
def test_a_real_optimum_export_generates_torchs_tokens_on_every_runtime(
    llama: object, tmp_path: Path
) -> None:
    import subprocess

    source = tmp_path / "llama"
    llama.save_pretrained(source, safe_serialization=True)  # type: ignore[attr-defined]
    folder = tmp_path / "llama-onnx"
    done = subprocess.run(
        [str(OPTIMUM_CLI), "export", "onnx", "--model", str(source), "--task",
         "text-generation-with-past", str(folder)],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    m = load_optimum(folder, reference=llama)
    assert m.lm_facts.cache_names[0][:2] == ["past_key_values.0.key", "past_key_values.0.value"]
    torch_layers = set(
        generate_profile(
            llama, backend="torch", prompt_length=PROMPT, output_length=OUTPUT, runs=1,
            warmup=0, layers=True,
        ).decode_layers["layer"]
    )  # fmt: skip
    for backend in ("onnxruntime", "numba"):
        g = generate_profile(
            m, backend=backend, prompt_length=PROMPT, output_length=OUTPUT, runs=1, warmup=0,
            layers=True,
        )  # fmt: skip
        assert g.reference_backend == "torch" and g.diverges_at is None, backend
        # optimum's node names land on the torch model's module paths, as the workbench's own
        timed = set(g.decode_layers["layer"]) - {"(unattributed)"}
        assert {"lm_head", "model.layers.1.mlp.down_proj", "model.norm"} <= timed, backend
        assert timed <= torch_layers | {"LlamaForCausalLM"}, backend
