"""Train the sample models shipped with workbench, deterministically, on CPU.

Usage::

    python sample_models/train.py                       # all four models
    python sample_models/train.py digits-cnn digits-mlp # some of them
    python sample_models/train.py --no-export           # weights and cards only
    python sample_models/train.py --export-only         # re-export model.onnx from weights

Data: scikit-learn's bundled ``load_digits`` (1797 8x8 images, no download), pixels
0..16 scaled to [0, 1] by /16, stratified split ``train_test_split(test_size=0.25,
random_state=0, stratify=y)``. The data and split are also written once to
``sample_models/digits/digits.npz`` (uint8 pixels) so that workbench needs no
scikit-learn at run time.

For each model it writes, under ``sample_models/<name>/``:
``weights.safetensors`` (the state dict), ``model.onnx`` (exported with
``wb.load(...).to_onnx``) and ``card.json`` (what it is and how well it does on the
held-out split).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from workbench.loaders.sample_archs import ARCHITECTURES  # noqa: E402

SEED = 0
THREADS = 2


@dataclass(frozen=True)
class Recipe:
    """How one sample is trained (AdamW with a one-cycle learning rate)."""

    epochs: int
    lr: float
    weight_decay: float = 1e-4
    batch_size: int = 64
    label_smoothing: float = 0.0
    shift: bool = False  # random +-1 pixel translations


RECIPES: dict[str, Recipe] = {
    "digits-mlp": Recipe(epochs=40, lr=2e-3),
    "digits-cnn": Recipe(epochs=30, lr=3e-3, shift=True),
    "digits-transformer": Recipe(epochs=80, lr=2e-3, weight_decay=0.05, shift=True),
    "digits-resnet": Recipe(epochs=12, lr=3e-3, shift=True),
}


# ---- data ---------------------------------------------------------------------------
def digits_arrays() -> dict[str, np.ndarray]:
    """The digits data as uint8 pixels plus the stratified train/test indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.uint8)  # values 0..16
    y = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.25, random_state=0, stratify=y
    )
    return {
        "x": x,
        "y": y,
        "train_idx": np.sort(train_idx).astype(np.int64),
        "test_idx": np.sort(test_idx).astype(np.int64),
    }


def write_digits(arrays: dict[str, np.ndarray]) -> Path:
    """Write ``digits/digits.npz`` (compressed; about 100 KB)."""
    path = HERE / "digits" / "digits.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def tensors(arrays: dict[str, np.ndarray], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    idx = arrays[f"{split}_idx"]
    x = torch.from_numpy(arrays["x"][idx].astype(np.float32) / 16.0).unsqueeze(1)
    return x, torch.from_numpy(arrays["y"][idx])


# ---- training -----------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)
    try:
        torch.use_deterministic_algorithms(True)
    except RuntimeError as err:  # pragma: no cover - depends on the torch build
        print(f"note: deterministic algorithms unavailable: {err}")


def random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by -1, 0 or +1 pixels in each direction, filling with zeros."""
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=generator)
    dx = torch.randint(0, 3, (n,), generator=generator)
    steps = torch.arange(8)
    rows = (dy[:, None] + steps)[:, :, None]
    cols = (dx[:, None] + steps)[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(dim=1) == y).float().mean())


def train_one(name: str, arrays: dict[str, np.ndarray]) -> tuple[torch.nn.Module, dict[str, Any]]:
    recipe = RECIPES[name]
    cls, description = ARCHITECTURES[name]
    seed_everything(SEED)
    model = cls()
    x_train, y_train = tensors(arrays, "train")
    x_test, y_test = tensors(arrays, "test")
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    steps_per_epoch = -(-len(y_train) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch
    )
    start = time.perf_counter()
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        total = 0.0
        for i in range(0, len(order), recipe.batch_size):
            batch = order[i : i + recipe.batch_size]
            xb, yb = x_train[batch], y_train[batch]
            if recipe.shift:
                xb = random_shift(xb, generator)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        if epoch % 5 == 4 or epoch == recipe.epochs - 1:
            print(
                f"  {name} epoch {epoch + 1:3d}/{recipe.epochs}  loss {total / len(y_train):.4f}  "
                f"test acc {accuracy(model, x_test, y_test):.4f}  "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    seconds = time.perf_counter() - start
    model.eval()
    card = {
        "name": name,
        "description": description,
        "architecture": f"{cls.__module__}.{cls.__qualname__}",
        "params": sum(p.numel() for p in model.parameters()),
        "dataset": "digits",
        "input": {"name": "x", "shape": ["batch", 1, 8, 8], "dtype": "float32", "range": [0, 1]},
        "output": {"shape": ["batch", 10], "meaning": "logits for digits 0-9"},
        "train_samples": len(y_train),
        "test_samples": len(y_test),
        "test_accuracy": round(accuracy(model, x_test, y_test), 6),
        "train_accuracy": round(accuracy(model, x_train, y_train), 6),
        "epochs": recipe.epochs,
        "seed": SEED,
        "training": {"optimizer": "AdamW", "schedule": "OneCycleLR", **asdict(recipe)},
        "train_seconds": round(seconds, 1),
        "threads": THREADS,
        "torch_version": torch.__version__,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
    }
    return model, card


def save_weights(model: torch.nn.Module, path: Path) -> str:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_weights(name: str) -> torch.nn.Module:
    from safetensors.torch import load_file

    cls, _ = ARCHITECTURES[name]
    model = cls()
    model.load_state_dict(load_file(str(HERE / name / "weights.safetensors")))
    return model.eval()


# ---- export -------------------------------------------------------------------------
def export_onnx(name: str, model: torch.nn.Module, x_test: torch.Tensor) -> float:
    """Export with workbench's own exporter and check onnxruntime agrees with torch."""
    import onnxruntime as ort

    import workbench as wb

    path = HERE / name / "model.onnx"
    handle = wb.load(model, example_inputs=(torch.zeros(1, 1, 8, 8),), name=name)
    handle.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    got = session.run(None, {input_name: x_test.numpy()})[0]
    with torch.no_grad():
        want = model(x_test).numpy()
    diff = float(np.abs(got - want).max())
    print(f"  {name}: wrote {path.relative_to(HERE)}; onnxruntime vs torch max |diff| {diff:.2e}")
    return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(RECIPES), help="samples to train")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    group.add_argument("--export-only", action="store_true", help="export from saved weights")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(RECIPES))
    if unknown:
        parser.error(f"unknown sample(s) {unknown}; choose from {list(RECIPES)}")

    arrays = digits_arrays()
    if not args.export_only:
        print(f"wrote {write_digits(arrays).relative_to(HERE)}")
    x_test, _ = tensors(arrays, "test")
    for name in args.names:
        out = HERE / name
        out.mkdir(exist_ok=True)
        card_path = out / "card.json"
        if args.export_only:
            model = load_weights(name)
            card = json.loads(card_path.read_text())
        else:
            print(f"training {name} ...", flush=True)
            model, card = train_one(name, arrays)
            card["weights_sha256"] = save_weights(model, out / "weights.safetensors")
            print(
                f"  {name}: test accuracy {card['test_accuracy']:.4f} in {card['train_seconds']} s"
            )
        if not args.no_export:
            seed_everything(SEED)
            card["onnx_max_abs_diff"] = float(f"{export_onnx(name, model, x_test):.3g}")
        card_path.write_text(json.dumps(card, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
