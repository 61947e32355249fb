"""Example workbench plugin: a reference ONNX backend and a weight fake-quant transform."""
