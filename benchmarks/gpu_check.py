"""GPU check of the numba-cuda backend: correctness against PyTorch CUDA, timings against
cuBLAS/cuDNN (through torch) and ONNX Runtime's CUDA execution provider when present; and
the GPU runtimes side by side (torch-compile on CUDA, ONNX Runtime's CUDA and TensorRT
providers: outputs, latency, compile / engine build time, CPU fallbacks).

Meant for a session with a lent GPU: a few minutes end to end. Prints a table and, with
``--out``, writes JSON. Without a CUDA GPU it says so and exits 0.

Targets on an H100: our FP32 GEMM at >= 10% of cuBLAS FP32 (TF32 off on both sides),
the sample ResNet within 3x of PyTorch CUDA.

The model set (#27: the Numba path's model set, ``tests/backends/numba/model_set.py``, as
``benchmarks/numba_cpu.py --model-set`` runs it on the CPU: the samples, trees,
recommendation and anomaly models among them, their INT8 variants, the ONNX zoo, a
transformers BERT and torchvision's CNNs and ViT) on numba-cuda: what it refuses, its
outputs against ONNX Runtime on the CPU (the ``model`` tolerances), its latency against
ONNX Runtime's CUDA provider where installed. Generation is CPU-only in the workbench
(``wb.generate_profile``), so it has no row here. torchvision's models need its
definitions importable (``PYTHONPATH=.venv-torchvision/lib/python3.11/site-packages``);
without them their rows say why.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--sizes 1024 2048 4096]
                                   [--model-set-only NAME ...] [--no-model-set]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

SAMPLES = ("digits-mlp", "digits-cnn", "digits-transformer", "digits-resnet")


def gpu_missing() -> str:
    """Why this machine cannot run the check, or "" when it can."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1: the simulator cannot be timed; unset it on a GPU machine"
    try:
        import torch
        from numba import cuda
    except ImportError as exc:
        return f"missing library: {exc}"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    try:
        if not cuda.is_available():
            return "Numba-CUDA sees no GPU (install numba-cuda matching the driver)"
    except Exception as exc:
        return f"Numba-CUDA failed to initialise: {exc}"
    return ""


def cuda_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` calls, with CUDA events per call."""
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def check_gemm(sizes: list[int]) -> list[dict[str, Any]]:
    """Our tiled GEMM (128x128 tiles, 8x8 per thread) against cuBLAS FP32 on square sizes."""
    import torch
    from numba import cuda

    from workbench.backends.numba import cuda as kernels

    torch.backends.cuda.matmul.allow_tf32 = False  # compare FP32 with FP32
    config = kernels.LARGE
    rows = []
    for size in sizes:
        a = torch.randn(size, size, device="cuda")
        b = torch.randn(size, size, device="cuda")
        c = torch.empty(size * size, device="cuda")
        a3, b3 = (
            cuda.as_cuda_array(a.view(1, size, size)),
            cuda.as_cuda_array(b.view(1, size, size)),
        )
        c_flat = cuda.as_cuda_array(c)
        geo = cuda.to_device(np.zeros(1, np.int64))
        bias = cuda.to_device(np.zeros(0, np.float32))
        grid = ((size + config.bn - 1) // config.bn, (size + config.bm - 1) // config.bm, 1)
        kernel = kernels.gemm_kernel(config, False)

        def ours(a3=a3, b3=b3, c_flat=c_flat, geo=geo, bias=bias, grid=grid, kernel=kernel, n=size):
            kernel[grid, config.threads](a3, b3, c_flat, n, n, n, geo, bias, 0, 0, 1.0, 1.0, 0, 0)

        ours()
        cuda.synchronize()
        reference = a @ b
        error = float((c.view(size, size) - reference).abs().max() / reference.abs().max())
        ours_ms = cuda_ms(ours, 10)
        cublas_ms = cuda_ms(lambda a=a, b=b: a @ b, 10)
        flops = 2.0 * size**3
        rows.append(
            {
                "size": size,
                "ours_ms": ours_ms,
                "cublas_ms": cublas_ms,
                "ours_tflops": flops / ours_ms / 1e9,
                "cublas_tflops": flops / cublas_ms / 1e9,
                "fraction_of_cublas": cublas_ms / ours_ms,
                "max_rel_error": error,
            }
        )
    return rows


def check_conv() -> dict[str, Any]:
    """One 3x3 convolution (N=32, 64->64 channels, 32x32) against cuDNN, TF32 off."""
    import torch

    import workbench as wb

    torch.backends.cudnn.allow_tf32 = False
    module = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.randn(32, 64, 32, 32)
    model = wb.load(module, example_inputs=(x[:1],), name="conv3x3")
    session = wb.backend("numba-cuda").compile(model, "cuda:0")
    inputs = {model.inputs[0].name: x.numpy()}
    (ours,) = session.run(inputs)
    gpu_module = module.cuda()
    x_gpu = x.cuda()
    with torch.no_grad():
        reference = gpu_module(x_gpu).cpu().numpy()
        cudnn_ms = cuda_ms(lambda: gpu_module(x_gpu), 20)
    ours_ms = cuda_ms(session.runner(inputs), 20)
    flops = 2.0 * 32 * 64 * 64 * 9 * 32 * 32
    return {
        "shape": "N32 C64 K64 32x32 3x3",
        "ours_ms": ours_ms,
        "cudnn_ms": cudnn_ms,
        "ours_tflops": flops / ours_ms / 1e9,
        "fraction_of_cudnn": cudnn_ms / ours_ms,
        "max_abs_error": float(np.abs(ours - reference).max()),
    }


def check_models(batches: list[int]) -> list[dict[str, Any]]:
    """Every sample model: outputs against PyTorch CUDA, latency against torch and ORT-CUDA."""
    import torch

    import workbench as wb
    from workbench.testing.tolerances import allclose

    rows = []
    for name in SAMPLES:
        model = wb.samples.load(name)
        session = wb.backend("numba-cuda").compile(model, "cuda:0")
        module = model.module.cuda().eval()
        ort_session = _ort_cuda_session(model)
        for batch in batches:
            inputs = model.example_inputs(batch_size=batch)
            x_gpu = torch.from_numpy(inputs["x"]).cuda()
            (ours,) = session.run(inputs)
            with torch.no_grad():
                reference = module(x_gpu).cpu().numpy()
                torch_ms = cuda_ms(lambda module=module, x_gpu=x_gpu: module(x_gpu), 30)
            row = {
                "model": name,
                "batch": batch,
                "match_torch": allclose(ours, reference, scope="model"),
                "max_abs_error": float(np.abs(ours - reference).max()),
                "ours_ms": cuda_ms(session.runner(inputs), 30),
                "torch_ms": torch_ms,
            }
            if ort_session is not None:
                row["ort_cuda_ms"] = cuda_ms(lambda s=ort_session, i=inputs: s.run(None, i), 30)
            row["ratio_vs_torch"] = row["ours_ms"] / torch_ms
            rows.append(row)
    return rows


def check_model_set(batches: list[int], only: list[str] | None = None) -> list[dict[str, Any]]:
    """Each model of the Numba path's model set on numba-cuda: refused ops, outputs
    against ORT on the CPU, latency against ORT's CUDA provider (rows, one per model and
    batch; a model that cannot be built or compiled is one row saying why)."""
    from numba_cpu import agreement, model_set

    import workbench as wb

    rows = []
    for entry, model, why in model_set(quick=False, only=only):
        row: dict[str, Any] = {"model": entry.name, "family": entry.family}
        if model is None:
            rows.append(row | {"status": f"not built: {why}"})
            continue
        try:
            session = wb.backend("numba-cuda").compile(model, "cuda:0")
        except wb.WorkbenchError as exc:  # refused ops: the message names them
            rows.append(row | {"status": f"refused: {str(exc).splitlines()[0]}"})
            continue
        reference = wb.backend("onnxruntime").compile(model, "cpu")
        try:
            ort_cuda = _ort_cuda_session(model)
        except Exception as exc:  # e.g. an op the CUDA provider lacks: the row says so
            ort_cuda, row["ort_cuda_error"] = None, f"{type(exc).__name__}: {exc}"
        for batch in batches:
            inputs = model.example_inputs(batch)
            try:
                ours = session.run(inputs)
            except Exception as exc:  # one model failing must not hide the others
                rows.append(row | {"batch": batch, "status": f"{type(exc).__name__}: {exc}"})
                continue
            result = row | {"batch": batch, "status": "runs"}
            result |= agreement(ours, reference.run(inputs))
            result["ours_ms"] = cuda_ms(session.runner(inputs), 20)
            if ort_cuda is not None:
                result["ort_cuda_ms"] = cuda_ms(lambda s=ort_cuda, i=inputs: s.run(None, i), 20)
                result["ratio_vs_ort_cuda"] = result["ours_ms"] / result["ort_cuda_ms"]
            rows.append(result)
        session.close()
    return rows


def _ort_cuda_session(model: Any) -> Any:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    return ort.InferenceSession(model.to_onnx().onnx_bytes, providers=["CUDAExecutionProvider"])


#: (backend, device, options) the runtimes section profiles on the GPU
RUNTIMES = (
    ("torch", "cuda:0", {}),
    ("torch-compile", "cuda:0", {"mode": "default"}),
    ("torch-compile", "cuda:0", {"mode": "reduce-overhead"}),
    ("onnxruntime", "cuda:0", {}),
    ("onnxruntime", "tensorrt:0", {}),
)


def check_runtimes(batches: list[int], reference: str = "cuda:0") -> list[dict[str, Any]]:
    """torch-compile and ONNX Runtime (CUDA, TensorRT) on the GPU: outputs against eager
    torch, steady-state latency next to compile time (TensorRT: engine build), and which
    layers fell back to the CPU provider. Runtimes this machine lacks are skipped rows.
    """
    import workbench as wb
    from workbench.testing.tolerances import allclose

    model = wb.samples.load("digits-cnn")
    rows = []
    for batch in batches:
        inputs = model.example_inputs(batch)
        (expected,) = wb.backend("torch").compile(model, reference).run(inputs)
        for backend, device, options in RUNTIMES:
            row: dict[str, Any] = {"backend": backend, "device": device, "batch": batch}
            row["options"] = options
            if device not in wb.backend(backend).devices():
                rows.append({**row, "skipped": f"{device} not available for {backend}"})
                continue
            compile_options = (
                {**options, "batch_size": batch} if backend == "torch-compile" else options
            )
            try:
                session = wb.backend(backend).compile(model, device, **compile_options)
                (out,) = session.run(inputs)
                session.close()
                p = wb.profile(
                    model,
                    backend,
                    device,
                    batch,
                    layer_repeats=10,
                    budget_s=1.0,
                    options=compile_options,
                )
            except Exception as exc:  # one runtime failing must not hide the others
                rows.append({**row, "error": f"{type(exc).__name__}: {exc}"})
                continue
            fallbacks = []
            if "provider" in p.layers:
                placed = p.layers.dropna(subset=["provider"])
                fallbacks = list(placed.loc[placed["note"].str.contains("fallback"), "layer"])
            row.update(
                latency_ms=p.latency.median,
                compile_s=p.compile_s,
                first_inference_ms=p.first_inference_ms,
                max_abs_error=float(np.max(np.abs(out - expected))),
                match_torch=bool(allclose(out, expected, scope="model")),
                cpu_fallback_layers=fallbacks,
                notes=p.notes,
            )
            rows.append(row)
    return rows


def run_section(results: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    start = time.perf_counter()
    try:
        results[key] = fn()
    except Exception as exc:  # keep going: one failing section must not hide the others
        results[key] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    print(f"[{key}] {time.perf_counter() - start:.1f}s", file=sys.stderr)


def render(results: dict[str, Any]) -> str:
    lines = []
    gemm = results.get("gemm")
    if isinstance(gemm, list):
        lines += ["GEMM FP32 (square)      ours TFLOP/s  cuBLAS TFLOP/s  ours/cuBLAS  max rel err"]
        lines += [
            f"  {r['size']:>5}               {r['ours_tflops']:10.2f}  {r['cublas_tflops']:14.2f}"
            f"  {r['fraction_of_cublas']:10.1%}  {r['max_rel_error']:.1e}"
            for r in gemm
        ]
    conv = results.get("conv")
    if isinstance(conv, dict) and "error" not in conv:
        lines += [
            f"Conv {conv['shape']}: ours {conv['ours_ms']:.3f} ms, cuDNN {conv['cudnn_ms']:.3f} ms "
            f"({conv['fraction_of_cudnn']:.1%} of cuDNN), max abs err {conv['max_abs_error']:.1e}"
        ]
    models = results.get("models")
    if isinstance(models, list):
        lines += [
            "model                batch  ours ms  torch ms  ort-cuda ms  ours/torch  matches torch"
        ]
        for r in models:
            ort_ms = f"{r['ort_cuda_ms']:11.3f}" if "ort_cuda_ms" in r else "          -"
            lines.append(
                f"{r['model']:20s} {r['batch']:5d} {r['ours_ms']:8.3f} {r['torch_ms']:9.3f} "
                f"{ort_ms} {r['ratio_vs_torch']:10.2f}x  {r['match_torch']}"
            )
    model_set = results.get("model_set")
    if isinstance(model_set, list):
        lines += [
            "model set on numba-cuda        batch  ours ms  ort-cuda ms  ours/ort  matches ORT"
        ]
        for r in model_set:
            if r.get("status") != "runs":
                lines.append(f"{r['model']:30s} {r.get('batch', '-')!s:>5}  {r['status']}")
                continue
            ort_ms = f"{r['ort_cuda_ms']:11.3f}" if "ort_cuda_ms" in r else "          -"
            ratio = f"{r['ratio_vs_ort_cuda']:7.2f}x" if "ratio_vs_ort_cuda" in r else "       -"
            lines.append(
                f"{r['model']:30s} {r['batch']:5d} {r['ours_ms']:8.3f} {ort_ms} {ratio}  "
                f"{r['matches']} ({r['max_abs_diff']:.1e})"
            )
    runtimes = results.get("runtimes")
    if isinstance(runtimes, list):
        from workbench.backends.spec import backend_spec

        lines += [f"{'runtime':46s} batch  latency ms  compile s  matches  CPU fallbacks"]
        for r in runtimes:
            name = f"{backend_spec(r['backend'], r['options'])} {r['device']}"
            if "latency_ms" not in r:
                lines.append(f"{name:46s} {r['batch']:5d}  {r.get('skipped') or r.get('error')}")
                continue
            lines.append(
                f"{name:46s} {r['batch']:5d} {r['latency_ms']:11.3f} {r['compile_s']:10.2f}  "
                f"{r['match_torch']!s:7s}  {', '.join(r['cpu_fallback_layers']) or '-'}"
            )
    for key, value in results.items():
        if isinstance(value, dict) and "error" in value:
            lines.append(f"{key}: FAILED {value['error']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON to this path")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--model-set-batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--model-set-only",
        nargs="+",
        metavar="NAME",
        help="only these models of the set (names as in numba_cpu.py)",
    )
    parser.add_argument("--no-model-set", action="store_true", help="skip the model set")
    args = parser.parse_args()
    why = gpu_missing()
    if why:
        print(f"gpu_check: skipped, no usable GPU here ({why}).")
        return 0
    import torch

    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0)}
    run_section(results, "gemm", lambda: check_gemm(args.sizes))
    run_section(results, "conv", check_conv)
    run_section(results, "models", lambda: check_models(args.batches))
    run_section(results, "runtimes", lambda: check_runtimes(args.batches))
    if not args.no_model_set:
        run_section(
            results,
            "model_set",
            lambda: check_model_set(args.model_set_batches, args.model_set_only),
        )
    print(f"device: {results['device']}")
    print(render(results))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
