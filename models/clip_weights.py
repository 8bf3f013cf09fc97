"""Reading CLIP weights from local files safely: state dicts (.safetensors/.pt/.pth/.bin) and OpenAI archives.

Nothing here runs code from a file: pickles go through torch.load(weights_only=True), and OpenAI's original
TorchScript archives (the ViT-B-32.pt the `clip` package downloads) are read tensor by tensor with a
restricted unpickler that never imports or calls the archive's TorchScript code.
"""

from __future__ import annotations

import collections
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from models.errors import CheckpointError
from models.files import read_checkpoint, require_file

# Tensors of OpenAI archives that are attributes, not weights: open_clip rebuilds them itself.
_OPENAI_ATTRIBUTES = ("input_resolution", "context_length", "vocab_size")


class _ScriptModuleRecord:
    """Stands in for a `__torch__.*` class while unpickling an archive: it only stores the attributes."""

    def __setstate__(self, state):
        self.__dict__["_state"] = state if isinstance(state, dict) else {}


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _first_argument(value, *_):
    return value


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, *_):
    """A tensor viewing an archive storage; `storage` is (bytes as UntypedStorage, dtype) from persistent_load."""
    untyped, dtype = storage
    return torch.empty(0, dtype=dtype).set_(untyped, offset, tuple(size), tuple(stride))


class _ArchiveUnpickler(pickle.Unpickler):
    """Unpickles TorchScript data.pkl into records and tensors; every other global is refused."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    }

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix
        self.storages: dict = {}  # key -> UntypedStorage; tensors may share one storage

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return _ScriptModuleRecord
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]  # persistent_load receives the dtype in place of the storage class
        if module == "torch.jit._pickle" and (name.startswith("build_") or name == "restore_type_tag"):
            return _first_argument  # these helpers only return their (already unpickled) first argument
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")

    def persistent_load(self, pid):
        # pid = ("storage", storage type, key, location, numel)
        _, storage_type, key, _, _ = pid
        if not isinstance(storage_type, torch.dtype):
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            self.storages[key] = (
                torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
            )
        return self.storages[key], storage_type


def _torchscript_prefix(path: Path) -> str | None:
    """The archive folder ("name/") when `path` is a TorchScript zip (it has code/ and data.pkl), else None."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return None
    for name in names:
        if name.endswith("/data.pkl"):
            prefix = name[: -len("data.pkl")]
            if any(n.startswith(prefix + "code/") for n in names) or f"{prefix}constants.pkl" in names:
                return prefix
    return None


def _flatten_records(record, prefix: str, out: dict) -> None:
    """Tensor attributes of a tree of module records, keyed like a state dict ("visual.conv1.weight")."""
    for name, value in record._state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptModuleRecord):
            _flatten_records(value, f"{prefix}{name}.", out)


def read_torchscript_tensors(path: Path, prefix: str) -> dict:
    """All tensor attributes of a TorchScript archive, without executing its code."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{prefix}data.pkl") as f:
            root = _ArchiveUnpickler(f, zf, prefix).load()
    except (
        pickle.UnpicklingError,
        KeyError,
        EOFError,
        zipfile.BadZipFile,
        RuntimeError,
        ValueError,
        TypeError,
        AttributeError,
    ) as exc:
        raise CheckpointError(
            f"{path} is a TorchScript archive whose weights cannot be read safely "
            f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}); "
            "re-save it as a state dict (.safetensors or .pt)."
        ) from None
    if not isinstance(root, _ScriptModuleRecord):
        raise CheckpointError(f"{path} is a TorchScript archive without a module inside; pass a CLIP state dict.")
    sd: dict = {}
    _flatten_records(root, "", sd)
    return sd


def read_clip_state_dict(path) -> tuple[dict, bool]:
    """(state dict of tensors, came-from-a-TorchScript-archive) for a local CLIP weights file."""
    path = Path(path).expanduser()
    require_file(path, "CLIP checkpoint", "weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), False
        except Exception as exc:  # safetensors raises its own SafetensorError and OSError/ValueError variants
            first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"CLIP checkpoint {path} is not a readable safetensors file (truncated or corrupt?): {first}"
            ) from None
    prefix = _torchscript_prefix(path)
    if prefix is not None:
        return read_torchscript_tensors(path, prefix), True
    ckpt = read_checkpoint(path)
    return _unwrap_state_dict(ckpt, path), False


def _unwrap_state_dict(ckpt, path: Path) -> dict:
    """The model state dict inside a checkpoint object (bare, {"state_dict": ...}, DDP "module." prefix)."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict) or not any(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__} without tensors, not a CLIP state dict.")
    if "g_ema" in ckpt or "style.1.weight" in ckpt:
        raise CheckpointError(
            f"{path} is a StyleGAN2 generator checkpoint, not CLIP weights; pass it as the generator instead."
        )
    sd = {str(k): v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def apply_clip_state_dict(model: torch.nn.Module, sd: dict, path, torchscript: bool = False) -> None:
    """Load `sd` into `model` strictly, saying in one line what does not fit (keys, shapes, non-finite values)."""
    expected = model.state_dict()
    if torchscript:  # archives also hold attribute tensors (masks, sizes) that are not weights
        sd = {k: v for k, v in sd.items() if k in expected}
    else:
        sd = {k: v for k, v in sd.items() if k not in _OPENAI_ATTRIBUTES}
    if not set(sd) & set(expected):
        keys = ", ".join(list(sd)[:3]) or "none"
        raise CheckpointError(f"{path} is not a CLIP state dict for this architecture (its keys start {keys}).")
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise CheckpointError(
            f"{path} does not match this CLIP architecture ({what}); pass the model name or "
            "config the weights were trained with."
        )
    fitted = {}
    for k, v in sd.items():
        target = expected[k]
        if k in ("logit_scale", "logit_bias") and v.numel() == target.numel():
            v = v.reshape(target.shape)
        if tuple(v.shape) != tuple(target.shape):
            raise CheckpointError(
                f"{path} does not match this CLIP architecture: '{k}' is {tuple(v.shape)}, the "
                f"model needs {tuple(target.shape)}; pass the model name or config it was "
                "trained with."
            )
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path} has non-finite values in '{k}'; the file is corrupt.")
        fitted[k] = v.to(target.dtype)
    model.load_state_dict(fitted, strict=True)


def warn_quickgelu(name: str, torchscript: bool, quick_gelu: bool) -> None:
    """OpenAI's archives were trained with QuickGELU; loading them into a GELU model gives other embeddings."""
    if torchscript and not quick_gelu:
        warnings.warn(
            f"{name} uses GELU but OpenAI's CLIP archives were trained with QuickGELU; use "
            "a QuickGELU model (an open_clip '-quickgelu' name, or quick_gelu: true in a config) to "
            "reproduce OpenAI's embeddings (SPEC §3).",
            UserWarning,
            stacklevel=3,
        )
