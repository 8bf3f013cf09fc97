"""A restricted unpickler for NVIDIA's network pickles: data comes back, code stored in the file never runs.

stylegan2-ada-pytorch and stylegan3 pickle each network as a "persistent class": the pickle asks
`torch_utils.persistence._reconstruct_persistent_obj(meta)` to exec the Python source in `meta["module_src"]`
and build the object from `meta["state"]` (the module's `__dict__`). Here every global the file names is looked
up in a short allow-list instead of being imported: persistent objects become inert `PersistentModule` records
(class name + state, the source is only kept as text), tensors are rebuilt from their storages through
`torch.load(weights_only=True)`, and any other global (`os.system`, `builtins.eval`, ...) stops the load.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from models.errors import CheckpointError


class UnsafePickleError(CheckpointError):
    """The pickle names a global outside the allow-list; nothing it refers to was imported or called."""


@dataclass
class PersistentModule:
    """Inert stand-in for one of NVIDIA's persistent nn.Modules: its class name and pickled state, no code."""

    class_name: str
    state: dict
    module_src: str = field(default="", repr=False)

    @property
    def modules(self) -> dict:
        """Child modules by name (the `_modules` of the pickled nn.Module)."""
        return dict(self.state.get("_modules") or {})

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """Own parameters and buffers by name (None entries, e.g. a disabled bias, left out)."""
        out = {}
        for group in ("_parameters", "_buffers"):
            out.update({k: v for k, v in (self.state.get(group) or {}).items() if isinstance(v, torch.Tensor)})
        return out

    def get(self, name: str, default=None):
        return self.state.get(name, default)

    def walk(self, prefix: str = ""):
        """(dotted name, module) for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self.modules.items():
            if isinstance(child, PersistentModule):
                yield from child.walk(f"{prefix}.{name}" if prefix else name)


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access) in `_init_kwargs` and training options."""


class TensorFlowNetwork(dict):
    """Stand-in for dnnlib.tflib.network.Network: recognised only to refuse TensorFlow pickles by name."""

    def __setstate__(self, state):
        self.update(state if isinstance(state, dict) else {})


def _reconstruct_persistent_obj(meta):
    """NVIDIA's persistent-object hook, minus the exec: keep the class name and state, never the behaviour."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise CheckpointError(
            "a persistent object in the pickle has no class name; the file is not an NVIDIA "
            "network pickle or it is corrupt."
        )
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise CheckpointError(
            f"the persistent {meta['class_name']} in the pickle has a {type(state).__name__} "
            "state instead of a dict; the file is corrupt."
        )
    src = meta.get("module_src")
    return PersistentModule(meta["class_name"], dict(state), src if isinstance(src, str) else "")


def _load_storage(data):
    """A storage pickled by torch as bytes in torch.save's legacy format; read back with weights_only."""
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("a tensor storage in the pickle is not bytes; the file is corrupt.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation chatter
            storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's weights_only refused what the storage bytes name
        raise UnsafePickleError(
            "a tensor storage in the pickle holds objects other than tensor data; refusing "
            "to load it (unpickling it could run code)"
        ) from None
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise CheckpointError(f"a tensor storage in the pickle holds a {type(storage).__name__}; the file is corrupt.")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2's job for plain CPU tensors: a view of `storage`; hooks and flags dropped."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise CheckpointError("a tensor in the pickle does not point at a typed storage; the file is corrupt.")
    if not isinstance(storage_offset, int) or not all(isinstance(n, int) for n in (*size, *stride)):
        raise CheckpointError("a tensor in the pickle has a non-integer size, stride or offset; the file is corrupt.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dtype, untyped = storage.dtype, storage.untyped()
    try:
        return torch.empty(0, dtype=dtype).set_(untyped, storage_offset, tuple(size), tuple(stride))
    except RuntimeError as exc:
        raise CheckpointError(
            f"a tensor in the pickle does not fit its storage ({str(exc).splitlines()[0][:120]}); the file is corrupt."
        ) from None


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """nn.Parameter -> its plain tensor (we copy values out; nothing trains on these)."""
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("a parameter in the pickle holds no tensor; the file is corrupt.")
    return data


def _rebuild_from_type(func, new_type, args, state=None):
    """A tensor subclass: rebuild the plain tensor with an allow-listed function, ignore the subclass."""
    if func not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(args, tuple):
        raise CheckpointError("a tensor subclass in the pickle is rebuilt by an unexpected function; refusing it.")
    return func(*args)


def _numpy_scalar(dtype, data=None):
    """numpy.core.multiarray.scalar for numeric dtypes (NVIDIA stores gains as np.float64) -> a Python number."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"a numpy scalar of dtype {dtype!r} in the pickle is not a plain number; refusing it.")
    if len(data) != dtype.itemsize:
        raise CheckpointError("a numpy scalar in the pickle has the wrong number of bytes; the file is corrupt.")
    return np.frombuffer(bytes(data), dtype=dtype)[0].item()


def _numpy_array(cls, shape, typecode):
    """numpy.core.multiarray._reconstruct, only ever for a plain ndarray (filled later by its __setstate__)."""
    if cls is not np.ndarray:
        raise CheckpointError("a numpy array in the pickle has an unexpected class; refusing it.")
    return np.ndarray.__new__(np.ndarray, shape, typecode)


# (module, name) -> what it resolves to. Nothing else is ever imported while reading a network pickle.
ALLOWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("dnnlib.tflib.network", "Network"): TensorFlowNetwork,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._utils", "_rebuild_from_type"): _rebuild_from_type,
    ("torch._utils", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_array,
}


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose globals come only from ALLOWED_GLOBALS; persistent ids are refused."""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"the pickle refers to {module}.{name}, which no StyleGAN network snapshot "
                "contains; refusing to load it (unpickling it could run code)"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(
            "the pickle uses persistent ids, which NVIDIA network snapshots do not; refusing to load it"
        )


def read_network_pickle(path) -> object:
    """Unpickle an NVIDIA network pickle with RestrictedUnpickler; CheckpointError (one line) on anything else."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except CheckpointError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        RuntimeError,
        MemoryError,
        OverflowError,
    ) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable network pickle (truncated or corrupt?): {first}") from None
