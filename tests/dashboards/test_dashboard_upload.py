"""Uploaded model files: type and size checks per chunk, expiry, loaded once, one-line errors."""

from __future__ import annotations

import pytest

from workbench.dashboards import actions
from workbench.dashboards.upload import MAX_PENDING, UploadBuffer, load_upload
from workbench.errors import ModelLoadError


def test_a_valid_onnx_upload_loads_and_stays_in_its_folder(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    data = actions.load_sample("digits-mlp").onnx_bytes
    model = load_upload("../../escape me.onnx", data, folder)
    assert model.framework == "onnx" and len(model.layers) > 0
    assert [p.name for p in folder.iterdir()] == ["escape_me.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["uploads"]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("model.txt", b"hello", "unsupported file type .txt"),
        ("model", b"hello", "unsupported file type (none)"),
        ("empty.onnx", b"", "empty.onnx is empty"),
        ("big.onnx", b"x" * 2048, "big.onnx is over the 0 MiB upload limit (2048 bytes)"),
        ("mine.onnx", b"not a model", "mine.onnx is not a valid ONNX model"),
        ("mine.pt2", b"garbage", "mine.pt2 is neither an ONNX file"),
        ("mine.pt", b"garbage", "mine.pt: TorchScript or pickle files run code when loaded"),
        ("mine.ts", b"garbage", "mine.ts: TorchScript files run code when loaded"),
        ("text.onnx", "a str, as Panel makes of text/plain", "text.onnx is corrupt or not a valid"),
    ],
)
def test_bad_uploads_are_refused_with_a_clear_message(tmp_path, name, data, message):
    with pytest.raises(ModelLoadError) as error:
        load_upload(name, data, tmp_path, limit=1024)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(tmp_path) not in str(error.value)  # no server paths in user messages


def _send(buffer, name, data, chunk_bytes=100):
    chunks = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    done = None
    for number, chunk in enumerate(chunks, 1):
        done = buffer.add(name, number, len(chunks), chunk)
    return done


def test_chunks_are_counted_as_they_arrive_and_an_oversize_upload_is_dropped_early():
    buffer = UploadBuffer(limit=250)
    assert buffer.add("big.onnx", 1, 1000, b"x" * 100) is None
    assert buffer.add("big.onnx", 2, 1000, b"x" * 100) is None
    with pytest.raises(ModelLoadError, match=r"big\.onnx is over the 0 MiB upload limit"):
        buffer.add("big.onnx", 3, 1000, b"x" * 100)
    assert buffer.pending_bytes == 0  # nothing of it is kept
    assert buffer.add("big.onnx", 4, 1000, b"x" * 100) is None  # later chunks are ignored
    assert buffer.pending_bytes == 0


def test_a_forbidden_type_is_refused_on_its_first_chunk():
    buffer = UploadBuffer()
    with pytest.raises(ModelLoadError, match="run code when loaded"):
        buffer.add("evil.pt", 1, 50, b"\x80\x04")
    assert buffer.add("evil.pt", 2, 50, b"more") is None and buffer.pending_bytes == 0


def test_out_of_order_or_non_bytes_chunks_drop_the_upload():
    buffer = UploadBuffer()
    buffer.add("a.onnx", 1, 3, b"x")
    with pytest.raises(ModelLoadError, match=r"a\.onnx is corrupt or not a valid ONNX model"):
        buffer.add("a.onnx", 3, 3, b"x")
    buffer.add("b.onnx", 1, 2, b"x")
    with pytest.raises(ModelLoadError, match=r"b\.onnx is corrupt"):
        buffer.add("b.onnx", 2, 2, "text")
    assert buffer.pending_bytes == 0


def test_unfinished_uploads_expire():
    now = [0.0]
    buffer = UploadBuffer(timeout_s=60, clock=lambda: now[0])
    buffer.add("slow.onnx", 1, 3, b"x" * 10)
    now[0] = 30.0
    assert buffer.expire() == [] and buffer.pending_bytes == 10
    now[0] = 91.0
    assert buffer.expire() == ["slow.onnx"] and buffer.pending_bytes == 0
    assert buffer.add("slow.onnx", 2, 3, b"x") is None  # its tail is ignored


def test_uploads_in_flight_are_capped():
    buffer = UploadBuffer()
    for i in range(MAX_PENDING):
        buffer.add(f"m{i}.onnx", 1, 2, b"x")
    with pytest.raises(ModelLoadError, match="wait for the other uploads"):
        buffer.add("one-more.onnx", 1, 2, b"x")


def test_a_complete_upload_comes_out_once_whatever_its_content_type():
    buffer = UploadBuffer()
    data = actions.load_sample("digits-mlp").onnx_bytes
    name, assembled = _send(buffer, "m.onnx", data, chunk_bytes=4096)
    assert (name, assembled) == ("m.onnx", data) and buffer.pending_bytes == 0


def test_the_served_dropper_loads_each_upload_once(make_app, monkeypatch):
    from panel.models.file_dropper import UploadEvent

    app = make_app()
    loads = []
    import workbench.dashboards.app as app_module

    real = app_module.load_upload
    monkeypatch.setattr(
        app_module, "load_upload", lambda *a, **k: loads.append(a[0]) or real(*a, **k)
    )
    data = actions.load_sample("digits-mlp").onnx_bytes
    for name in ("first.onnx", "second.onnx"):
        event = UploadEvent(
            model=None,
            data={"name": name, "chunk": 1, "total_chunks": 1, "data": data, "type": "text/plain"},
        )
        app.upload._process_event(event)
        app.state.jobs.wait()
    assert loads == ["first.onnx", "second.onnx"]  # the second did not reload the first
    assert app.upload.value == {}  # nothing kept in the widget
    names = set(app.state.param.model_name.objects)
    assert {"first.onnx (uploaded)", "second.onnx (uploaded)"} <= names


def test_a_refused_upload_shows_one_line(make_app):
    from panel.models.file_dropper import UploadEvent

    app = make_app()
    event = UploadEvent(
        model=None, data={"name": "x.pt", "chunk": 1, "total_chunks": 9, "data": b"\x80"}
    )
    app.upload._process_event(event)
    assert "x.pt: TorchScript or pickle files run code" in app.state.jobs.error


def test_closing_the_session_removes_its_upload_folder(make_app):
    import os

    app = make_app()
    folder = app._upload_dir
    assert os.path.isdir(folder)
    app.close()
    assert not os.path.exists(folder)


def test_a_very_long_name_is_cut_and_never_shows_the_server_folder(tmp_path):
    data = actions.load_sample("digits-mlp").onnx_bytes
    model = load_upload("m" * 300 + ".onnx", data, tmp_path)  # past the 255-byte file name limit
    assert model.framework == "onnx"
    (stored,) = tmp_path.iterdir()
    assert len(stored.name) == 100 and stored.name.endswith("m.onnx")


def test_a_file_that_cannot_be_written_is_one_line_without_the_folder(tmp_path):
    with pytest.raises(ModelLoadError) as error:
        load_upload("mine.onnx", b"data", tmp_path / "gone")  # the session folder is missing
    assert (
        str(error.value) == "mine.onnx could not be stored for loading (No such file or directory)"
    )
