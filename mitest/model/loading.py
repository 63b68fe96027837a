"""Checks that a model directory can be loaded faithfully, before and after transformers loads it.

Before: ``config.json`` and ``tokenizer_config.json`` are valid JSON objects that need no remote code,
and every safetensors header is well formed and agrees with its file's size. After: transformers'
loading report lists no missing, unexpected or mismatched tensor, and no parameter was initialised
at random. Each refusal is a :class:`ModelLoadError` naming the file and the tensor.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitest.errors import ModelLoadError

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"

# Bits per element of every safetensors dtype.
_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip

_LIST_SHOWN = 8
_NO_REMOTE_CODE = (
    "mitest never runs remote code. If the built-in transformers class is what you mean, delete auto_map "
    "from the file; otherwise load the model yourself (after reading its code) and wrap it with mt.Model.from_hf"
)


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors header."""

    file: str
    dtype: str
    shape: tuple[int, ...]


# -- configs ---------------------------------------------------------------------------------------


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; anything else (unreadable, broken, a list) is a ModelLoadError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path} cannot be read ({error}); fix or replace the file") from error
    except json.JSONDecodeError as error:
        raise ModelLoadError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "fix the file or save it again with save_pretrained"
        ) from error
    if not isinstance(data, dict):
        raise ModelLoadError(
            f"{path} holds a JSON {type(data).__name__}, not an object; save it again with save_pretrained"
        )
    return data


def check_config(path: Path) -> dict[str, Any]:
    """The parsed ``config.json``: a built-in ``model_type``, no ``auto_map``, model classes in ``architectures``."""
    config = read_json_object(path)
    _refuse_auto_map(path, config)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ModelLoadError(
            f'{path} has no model_type; add the transformers architecture name (e.g. "gpt2") '
            "or save the model again with save_pretrained"
        )
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise ModelLoadError(
            f"{path}: model_type {model_type!r} is not an architecture this transformers knows, and mitest never "
            "runs remote code; upgrade transformers, or load the model yourself and wrap it with mt.Model.from_hf"
        )
    model_class(path, config)
    return config


def check_tokenizer_config(path: Path) -> None:
    """A ``tokenizer_config.json`` that is a JSON object, needs no remote code and names a known class."""
    if not path.is_file():
        return
    config = read_json_object(path)
    _refuse_auto_map(path, config)
    name = config.get("tokenizer_class")
    if name is not None and not _known_tokenizer(name):
        raise ModelLoadError(
            f"{path}: tokenizer_class {name!r} is not a tokenizer this transformers defines (custom code is never "
            'run); name a built-in class (e.g. "PreTrainedTokenizerFast") or remove the entry'
        )


def _known_tokenizer(name: Any) -> bool:
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    if not isinstance(name, str) or not name.isidentifier():
        return False
    try:
        return tokenizer_class_from_name(name) is not None or tokenizer_class_from_name(name + "Fast") is not None
    except (ImportError, AttributeError, ValueError):
        return False


def model_class(path: Path, config: dict[str, Any]) -> type | None:
    """The transformers model class ``architectures`` names, or None to pick an auto class by task."""
    import transformers

    architectures = config.get("architectures") or []
    if not isinstance(architectures, list) or not all(isinstance(name, str) for name in architectures):
        raise ModelLoadError(f"{path}: architectures must be a list of class names, got {architectures!r}")
    for name in architectures:
        found = getattr(transformers, name, None) if name.isidentifier() else None
        if not (isinstance(found, type) and issubclass(found, transformers.PreTrainedModel)):
            what = "not a transformers model class" if found is not None else "a class this transformers lacks"
            raise ModelLoadError(
                f"{path}: architectures names {name!r}, {what} (custom code is never run); "
                'name a built-in model class (e.g. "GPT2LMHeadModel") or remove the entry'
            )
        return found
    return None


def _refuse_auto_map(path: Path, config: dict[str, Any]) -> None:
    auto_map = config.get("auto_map")
    if auto_map:
        entries = (
            ", ".join(f"{key} -> {value}" for key, value in auto_map.items()) if isinstance(auto_map, dict) else ""
        )
        detail = f" ({entries})" if entries else ""
        raise ModelLoadError(f"{path} has an auto_map{detail}: the model needs remote code. {_NO_REMOTE_CODE}")


# -- safetensors -----------------------------------------------------------------------------------


def checkpoint_files(directory: Path) -> list[Path]:
    """The safetensors files transformers would read: ``model.safetensors`` or the shards of its index."""
    index = directory / SAFE_INDEX
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
            raise ModelLoadError(f"{index} has no weight_map of tensor -> file; save the model again")
        shards = [directory / name for name in dict.fromkeys(weight_map.values())]
        for shard in shards:
            if shard.parent != directory or not shard.is_file():
                tensors = [key for key, file in weight_map.items() if directory / file == shard]
                raise ModelLoadError(
                    f"{index} lists shard {shard.name}, which is missing from {directory} "
                    f"(it holds {_names(tensors)}); copy the whole checkpoint"
                )
        return shards
    if (directory / SAFE_WEIGHTS).is_file():
        return [directory / SAFE_WEIGHTS]
    others = sorted(p.name for p in directory.glob("*.safetensors"))
    found = f" (found {', '.join(others)})" if others else ""
    raise ModelLoadError(
        f"{directory} has neither {SAFE_WEIGHTS} nor {SAFE_INDEX}{found}; save the model with "
        "model.save_pretrained(dir), which writes safetensors under those names"
    )


def read_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors of one safetensors file, after checking its header against the file's size.

    Every tensor's byte range must match its dtype and shape, and the ranges must tile the data
    section exactly; a header that lies about a shape or an offset is refused with the tensor's name.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise _corrupt(path, f"it is {size} bytes, shorter than the 8-byte header length")
        length = int.from_bytes(prefix, "little")
        if length > size - 8:
            raise _corrupt(path, f"its header claims {length} bytes but the file has {size - 8} after the length")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _corrupt(path, f"its header is not valid JSON ({error})") from error
    if not isinstance(header, dict):
        raise _corrupt(path, "its header is not a JSON object")
    header.pop("__metadata__", None)
    ranges = [(_entry_range(path, name, entry), name) for name, entry in header.items()]
    _check_tiling(path, sorted(ranges), size - 8 - length)
    return {name: TensorEntry(path.name, entry["dtype"], tuple(entry["shape"])) for name, entry in header.items()}


def _entry_range(path: Path, name: str, entry: Any) -> tuple[int, int]:
    if not isinstance(entry, dict):
        raise _corrupt(path, f"tensor {name!r} has no dtype/shape/data_offsets entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPE_BITS:
        raise _corrupt(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise _corrupt(path, f"tensor {name!r} has shape {shape!r}, not a list of sizes >= 0")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise _corrupt(path, f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end] with begin <= end")
    expected = math.ceil(math.prod(shape) * _DTYPE_BITS[dtype] / 8)
    if offsets[1] - offsets[0] != expected:
        raise _corrupt(
            path,
            f"tensor {name!r} claims shape {shape} of {dtype} ({expected} bytes) but its data_offsets "
            f"span {offsets[1] - offsets[0]} bytes",
        )
    return offsets[0], offsets[1]


def _check_tiling(path: Path, ranges: list[tuple[tuple[int, int], str]], data_size: int) -> None:
    position = 0
    for (begin, end), name in ranges:
        if begin != position:
            what = "overlaps the tensor before it" if begin < position else f"leaves a gap of {begin - position} bytes"
            raise _corrupt(path, f"tensor {name!r} at bytes {begin}..{end} {what}")
        position = end
    if position != data_size:
        raise _corrupt(path, f"its tensors cover {position} bytes but the data section holds {data_size}")


def _corrupt(path: Path, detail: str) -> ModelLoadError:
    return ModelLoadError(
        f"{path} is not a valid safetensors file: {detail}; the file is corrupt or was edited, save it again"
    )


def read_checkpoint(directory: Path) -> dict[str, TensorEntry]:
    """Every tensor of the directory's checkpoint, by name, from validated headers."""
    tensors: dict[str, TensorEntry] = {}
    for path in checkpoint_files(directory):
        for name, entry in read_header(path).items():
            if name in tensors:
                raise ModelLoadError(f"tensor {name!r} is stored twice, in {tensors[name].file} and {path.name}")
            tensors[name] = entry
    index = directory / SAFE_INDEX
    if index.is_file():
        for name, file in read_json_object(index)["weight_map"].items():
            if name not in tensors:
                raise ModelLoadError(f"{index} places tensor {name!r} in {file}, which does not hold it; save again")
    return tensors


# -- after loading ---------------------------------------------------------------------------------


def check_loading_info(directory: Path, info: dict[str, Any], tensors: dict[str, TensorEntry], model: Any) -> None:
    """Refuse a load whose report lists missing, unexpected or mismatched tensors or errors."""
    where = SAFE_INDEX if (directory / SAFE_INDEX).is_file() else SAFE_WEIGHTS
    name = type(model).__name__
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise ModelLoadError(
            f"{directory / where} is missing {len(missing)} tensor(s) the {name} of config.json needs: "
            f"{_names(missing)}; transformers would initialise them at random. Save the whole model with "
            "save_pretrained, or fix config.json so it describes the saved weights"
        )
    unexpected = sorted(info.get("unexpected_keys") or ())
    if unexpected:
        files = sorted({tensors[key].file for key in unexpected if key in tensors} or {where})
        raise ModelLoadError(
            f"{directory / files[0]} holds {len(unexpected)} tensor(s) the {name} of config.json has no place for: "
            f"{_names(unexpected)} (unexpected); the weights belong to another architecture or config. "
            "Fix config.json or save the model again"
        )
    mismatched = sorted(info.get("mismatched_keys") or (), key=lambda item: item[0])
    if mismatched:
        shown = "; ".join(
            f"{key}: {tuple(saved)} in {_file_of(key, tensors, where)}, {tuple(wanted)} from config.json"
            for key, saved, wanted in mismatched[:_LIST_SHOWN]
        )
        raise ModelLoadError(
            f"{len(mismatched)} tensor shape(s) of {directory} differ from what config.json implies ({shown}); "
            "fix the sizes in config.json or save the model again"
        )
    errors = list(info.get("error_msgs") or ())
    if errors:
        raise ModelLoadError(f"transformers reported errors loading {directory / where}: {'; '.join(map(str, errors))}")


def newly_initialised(model: Any) -> list[str]:
    """Tensors transformers initialised at random while ``from_pretrained`` loaded ``model``.

    ``from_pretrained`` flags every tensor it filled from the checkpoint (``_is_hf_initialized``);
    a model built from a config has no flags at all, so it reports nothing.
    """
    state = model.state_dict(keep_vars=True)
    flags = {key: bool(getattr(tensor, "_is_hf_initialized", False)) for key, tensor in state.items()}
    if not any(flags.values()):
        return []
    return [key for key, flagged in flags.items() if not flagged]


def refuse_newly_initialised(model: Any, where: str, fix: str) -> None:
    """Raise when :func:`newly_initialised` finds tensors (``where`` names the source, ``fix`` the way out)."""
    fresh = newly_initialised(model)
    if fresh:
        raise ModelLoadError(
            f"{where}: {len(fresh)} tensor(s) of this {type(model).__name__} were not loaded from its checkpoint: "
            f"{_names(fresh)}. from_pretrained flags every tensor it fills from the file; these it newly "
            "initialised at random (missing from the file, or re-made for a mismatched size), or they were "
            f"added after loading. {fix}"
        )


def _file_of(key: str, tensors: dict[str, TensorEntry], default: str) -> str:
    return tensors[key].file if key in tensors else default


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_SHOWN])
    return shown if len(keys) <= _LIST_SHOWN else f"{shown} and {len(keys) - _LIST_SHOWN} more"
