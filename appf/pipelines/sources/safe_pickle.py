"""A restricted unpickler for dataset pickles: numpy arrays, numpy scalars/dtypes and plain
Python containers only. Any other global (os.system, arbitrary classes, ...) is refused before
it is imported, so loading an untrusted pickle cannot run code beyond numpy's array rebuild."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from appf.schemas import SourceError

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    # ndarray rebuild (numpy 1.x names and numpy 2.x `_core` names)
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    # plain containers that pickle through a global
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("_codecs", "encode"),  # bytes of protocol-2 numpy pickles (latin1 text -> bytes)
    ("builtins", "complex"), ("builtins", "slice"), ("collections", "OrderedDict"),
})


class PickledRecord:
    """Stand-in for a dataset's own plain record class (e.g. RLBench's Observation): the
    pickled attributes land in __dict__; no code of the original class runs."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"record state must be a dict, got {type(state).__name__}")
        self.__dict__.update(state)


class RestrictedUnpickler(pickle.Unpickler):
    """Numpy arrays and plain containers; `records` names classes (module, name) that load as
    attribute-only PickledRecord stand-ins."""

    def __init__(self, file: Any, *, records: frozenset[tuple[str, str]] = frozenset(), **kw: Any):
        super().__init__(file, **kw)
        self.records = records

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins", "_codecs": "_codecs"}.get(module, module)  # protocol < 3
        if (module, name) in ALLOWED_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        if (module, name) in self.records:
            return type(name, (PickledRecord,), {"__module__": module})
        if self.records and (module, name) == ("copyreg", "_reconstructor"):
            return _reconstruct_record
        if self.records and (module, name) == ("builtins", "object"):
            return object
        raise pickle.UnpicklingError(
            f"refused global {module}.{name}: only numpy arrays and plain containers are allowed")


def _reconstruct_record(cls: type, base: type, state: Any) -> Any:
    """Protocol 0/1 object rebuild, for PickledRecord stand-ins only."""
    if not (isinstance(cls, type) and issubclass(cls, PickledRecord)) or base is not object:
        raise pickle.UnpicklingError(f"refused object rebuild of {cls!r}")
    return object.__new__(cls)


def safe_load(path: Path, episode_id: str = "", field: str = "",
              records: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """Unpickle `path` with RestrictedUnpickler; any refusal or corruption -> SourceError."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SourceError(f"cannot read pickle: {e}", path=str(path), episode_id=episode_id,
                          field=field) from e
    try:
        return RestrictedUnpickler(io.BytesIO(data), records=records, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise SourceError(f"unsafe or corrupt pickle refused: {e}", path=str(path),
                          episode_id=episode_id, field=field) from e
