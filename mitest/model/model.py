"""``mt.Model``: a thin wrapper over a transformers model that names its sites.

The wrapper never copies or converts weights and never changes the wrapped model: runs switch to
eval mode and back, hooks live only for the duration of a run, and attention settings are restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from mitest import progress
from mitest.errors import ModelError, ModelLoadError, NestedRunError, SiteError, closest
from mitest.model import loading
from mitest.model.cache import RunCache
from mitest.model.layouts import Dims, Layout, ResolvedSite, dims_for, layout_for


class Model:
    """A transformers model with TransformerLens-style site names.

    Build one with :meth:`from_hf` (an in-memory model) or :meth:`load` (a local directory).
    """

    def __init__(self, hf_model: nn.Module, tokenizer: Any = None) -> None:
        if not isinstance(hf_model, nn.Module):
            raise ModelError(f"Model wraps a torch nn.Module (a transformers model), got {type(hf_model).__name__}")
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.config = getattr(hf_model, "config", None)
        self.family: Layout | None = layout_for(self.config) if self.config is not None else None
        self.dims: Dims | None = dims_for(self.config) if self.family is not None else None
        self._points: dict[str, ResolvedSite] = {}
        self._site_names: list[str] | None = None
        self._revision: tuple[tuple, str] | None = None
        self.cache = RunCache()  # clean runs and activations reused across mt.measure calls

    @classmethod
    def from_hf(cls, model: nn.Module, tokenizer: Any = None, *, allow_new_weights: bool = False) -> Model:
        """Wrap an in-memory transformers ``PreTrainedModel`` (weights are shared, not copied).

        A model that ``from_pretrained`` loaded with some tensors not from its checkpoint (initialised
        at random because missing or mis-shaped, or modules added after loading) is refused unless
        ``allow_new_weights``. A model built from a config carries no loading record and is accepted.
        """
        if not allow_new_weights and isinstance(model, nn.Module):
            loading.refuse_newly_initialised(
                model,
                type(model).__name__,
                "Load a checkpoint that holds them, or pass allow_new_weights=True if you set them yourself",
            )
        return cls(model, tokenizer)

    @classmethod
    def load(cls, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> Model:
        """Load a local directory holding ``config.json``, ``*.safetensors`` and optional tokenizer files.

        Nothing is downloaded and no remote code runs; pickle checkpoints are refused, and so is every
        directory whose weights would not be loaded faithfully: a missing, unexpected or mis-shaped
        tensor, a corrupt safetensors header, a config or tokenizer that needs remote code. Each is a
        :class:`ModelLoadError` naming the file and the tensor.
        """
        directory = Path(path)
        if not (directory / "config.json").is_file():
            raise ModelLoadError(
                f"{directory} has no config.json; Model.load expects a saved transformers model directory"
            )
        if not any(directory.glob("*.safetensors")):
            found = sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
            hint = f" (found {', '.join(found)}: pickle checkpoints are not loaded)" if found else ""
            raise ModelLoadError(
                f"{directory} has no .safetensors weights{hint}; "
                "save them with model.save_pretrained(dir), which writes safetensors"
            )
        config_dict = loading.check_config(directory / "config.json")
        loading.check_tokenizer_config(directory / "tokenizer_config.json")
        tensors = loading.read_checkpoint(directory)
        model = _load_weights(directory, config_dict, tensors, dtype)
        return cls(model, _load_tokenizer(directory))

    @property
    def vocab_size(self) -> int | None:
        """Number of token ids the model's embedding accepts (None if the model does not say)."""
        get_embeddings = getattr(self.hf_model, "get_input_embeddings", None)
        embedding = get_embeddings() if callable(get_embeddings) else None
        if isinstance(embedding, nn.Embedding):
            return int(embedding.num_embeddings)
        size = getattr(self.config, "vocab_size", None)
        return None if size is None else int(size)

    def sites(self) -> list[str]:
        """Every TransformerLens-style site name of this model, in forward order.

        On architectures without a site table this lists raw module paths instead; raw module
        paths (``model.named_modules()`` names) are accepted everywhere regardless.
        """
        if self._site_names is None:
            self._site_names = self._family_site_names() if self.family else self._module_names()
        return list(self._site_names)

    def resolve(self, name: str) -> ResolvedSite:
        """The hook point for a site name or raw module path; unknown names list the closest ones."""
        point = self._points.get(name)
        if point is None:
            point = self._resolve(name)
            self._points[name] = point
        return point

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, pos, vocab]`` of one forward pass (call inside :meth:`running`).

        Without padding the mask is left out, so the numbers are exactly those of ``hf_model(input_ids)``.
        """
        mask = None if bool(attention_mask.all()) else attention_mask
        output = self.hf_model(input_ids=input_ids, attention_mask=mask)
        logits = output.logits if hasattr(output, "logits") else output[0] if isinstance(output, tuple) else output
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
            raise ModelError(
                f"{type(self.hf_model).__name__} did not return [batch, pos, vocab] logits; "
                "wrap a model with a language-modelling head (e.g. AutoModelForCausalLM)"
            )
        return logits

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        """Logits read from a residual stream ``[..., d_model]`` (the logit lens): the model's final norm,
        which computes its own mean and variance (or RMS) of ``residual``, then the unembedding."""
        family = self.layout()[0]
        get = getattr(self.hf_model, "get_output_embeddings", None)
        head = get() if callable(get) else None
        if family.final_norm is None or not isinstance(head, nn.Module):
            raise SiteError(
                f"the logit lens needs a decoder with a final norm and an unembedding (GPT-2, GPT-NeoX, Llama "
                f"family); {type(self.hf_model).__name__} has {'none' if head is None else 'no final norm'}"
            )
        norm = cast(nn.Module, self.hf_model.base_model).get_submodule(family.final_norm)
        return head(norm(residual))

    def running(self):
        """Context for forward passes: eval mode, no gradients, training flags restored after; runs of
        the same model from several threads wait for each other (see :func:`inference_mode`)."""
        return inference_mode(self.hf_model)

    @property
    def device(self) -> torch.device:
        """Device of the model's first parameter."""
        return next(self.hf_model.parameters()).device

    @property
    def revision(self) -> str:
        """A content hash of the config and weights, stable across runs and machines.

        It names the model in a claim's identity, so a baseline compares like with like. Weights
        enter through each tensor's name, shape, dtype and a strided sample of its values.
        """
        return self.revision_at(self.weights_version())

    def revision_at(self, version: tuple) -> str:
        """:attr:`revision` for a ``weights_version()`` the caller already computed (no second pass)."""
        if self._revision is not None and self._revision[0] == version:
            return self._revision[1]
        digest = hashlib.sha256()
        if self.config is not None and hasattr(self.config, "to_dict"):
            digest.update(json.dumps(_architecture(self.config.to_dict()), sort_keys=True, default=str).encode())
        with torch.no_grad():
            for name, tensor in [*self.hf_model.named_parameters(), *self.hf_model.named_buffers()]:
                flat = tensor.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // 4096)].double().cpu().numpy()
                digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:".encode())
                digest.update(sample.tobytes())
        self._revision = (version, digest.hexdigest()[:16])
        return self._revision[1]

    def weights_version(self) -> tuple:
        """Changes when any parameter or buffer is replaced, cast, moved or modified (invalidates caches).

        In-place edits through autograd bump torch's version counter; edits through ``.data`` do not,
        so a strided sample of every tensor's values enters a weighted checksum as well (cheap, not a
        full hash; the weights differ per entry, so a sign flip or a swap of sampled entries shows).
        """
        state = []
        samples: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        with torch.no_grad():
            for tensor in _tensors(self.hf_model):
                where = (tensor.dtype, tensor.device)
                state.append((tensor.data_ptr(), *where, tensor._version))
                flat = tensor.reshape(-1)
                samples.setdefault(where, []).append(flat[:: max(1, flat.numel() // 512)])
            checksums = tuple(_weighted_sum(torch.cat(group)) for group in samples.values())
        return tuple(state), checksums

    def __repr__(self) -> str:
        family = self.family.name if self.family else "raw modules"
        return f"Model({type(self.hf_model).__name__}, sites={family})"

    def layout(self) -> tuple[Layout, Dims]:
        """The site table and sizes of a supported architecture; raises :class:`SiteError` on other models."""
        if self.family is None or self.dims is None:
            model_type = getattr(self.config, "model_type", None)
            raise SiteError(
                f"{type(self.hf_model).__name__} (model_type {model_type!r}) has no mitest site table; "
                "only raw module paths such as 'model.layers.3.mlp' work on it"
            )
        return self.family, self.dims

    # -- resolution ---------------------------------------------------------------------------

    def _family_site_names(self) -> list[str]:
        family, dims = self.layout()
        names = list(family.embeddings)
        for layer in range(dims.n_layers):
            names += [f"blocks.{layer}.{s}" for s in self._layer_site_names()]
        return names

    def _layer_site_names(self) -> list[str]:
        family, _ = self.layout()
        names = list(family.layer_sites)
        if not family.has_resid_mid(self.config):
            names.remove("hook_resid_mid")
        return names

    def _module_names(self) -> list[str]:
        return [name for name, _ in self.hf_model.named_modules() if name]

    def _resolve(self, name: str) -> ResolvedSite:
        if not isinstance(name, str):
            raise SiteError(f"site names are strings, got {name!r}")
        modules = dict(self.hf_model.named_modules())
        if self.family is not None:
            point = self._resolve_family(name)
            if point is not None:
                return point
        if name in modules and name:
            return ResolvedSite(name, modules[name], "output", lambda t: t)
        suggestions = closest(name, self.sites() + ([] if self.family is None else self._module_names()))
        hint = f"; closest: {', '.join(suggestions)}" if suggestions else ""
        raise SiteError(
            f"unknown site {name!r} on {type(self.hf_model).__name__}{hint}. See model.sites() for all names"
        )

    def _resolve_family(self, name: str) -> ResolvedSite | None:
        family, dims = self.layout()
        base = cast(nn.Module, self.hf_model.base_model)  # a transformers model's body, or the model itself
        if name in family.embeddings:
            return ResolvedSite(name, base.get_submodule(family.embeddings[name]), "output", lambda t: t)
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "blocks":
            return None
        if parts[1] == "*":
            raise SiteError(
                f"site {name!r} is a pattern (every layer): mt.sweep expands it, one cell per site; "
                f"elsewhere name the layers, e.g. blocks.0.{parts[2]}"
            )
        if not (parts[1].isascii() and parts[1].isdigit()):  # str.isdigit() also accepts '²' and '٣'
            raise SiteError(f"site {name!r}: layer must be a number >= 0, e.g. blocks.0.{parts[2]}")
        layer, site_name = int(parts[1]), parts[2]
        if site_name not in self._layer_site_names():
            return None
        if layer >= dims.n_layers:
            raise SiteError(
                f"site {name!r}: layer {layer} does not exist; this model has layers 0..{dims.n_layers - 1}"
            )
        spec = family.layer_sites[site_name]
        layer_module = base.get_submodule(f"{family.layers}.{layer}")
        module = layer_module.get_submodule(spec.path) if spec.path else layer_module
        components = spec.components(dims) if spec.components else None
        addend = layer_module.get_submodule(spec.addend) if spec.addend else None
        return ResolvedSite(name, module, spec.kind, spec.view(dims), components, addend)


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer of ``model``, in one walk of its modules (a tied weight twice)."""
    tensors = []
    for module in model.modules():
        tensors += [t for t in (*module._parameters.values(), *module._buffers.values()) if t is not None]
    return tensors


_SUM_WEIGHTS: dict[tuple[int, torch.device], torch.Tensor] = {}


def _weighted_sum(values: torch.Tensor) -> float:
    """``sum(w_i * values_i)`` in float64 with fixed weights in [1, 2), distinct per entry."""
    key = (values.numel(), values.device)
    weights = _SUM_WEIGHTS.get(key)
    if weights is None:
        golden = torch.arange(1, values.numel() + 1, dtype=torch.float64) * 0.6180339887498949
        weights = _SUM_WEIGHTS.setdefault(key, (1.0 + golden.frac()).to(values.device))
    return float(values.to(torch.float64) @ weights) if values.numel() else 0.0


# Config entries that say where or with which library a model was saved, not what it computes.
_PROVENANCE_KEYS = ("_name_or_path", "transformers_version", "_commit_hash")


def _architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The config without provenance entries, so the same weights hash the same from any path."""
    return {key: value for key, value in config.items() if key not in _PROVENANCE_KEYS}


def _model_class(directory: Path, config_dict: dict[str, Any], config: Any) -> Any:
    import transformers

    named = loading.model_class(directory / "config.json", config_dict)
    if named is not None:
        return named
    if getattr(config, "is_decoder", True) and config.model_type != "bert":
        return transformers.AutoModelForCausalLM
    return transformers.AutoModelForMaskedLM


_OFFLINE = {"local_files_only": True, "trust_remote_code": False}


def _load_weights(
    directory: Path, config_dict: dict[str, Any], tensors: dict[str, loading.TensorEntry], dtype: torch.dtype | None
) -> nn.Module:
    """The model of a checked directory, refused unless every tensor came from its checkpoint."""
    import transformers

    with _as_load_error(directory / "config.json"):
        config = transformers.AutoConfig.from_pretrained(directory, **_OFFLINE)
    model_class = _model_class(directory, config_dict, config)
    with _as_load_error(directory), _loading_bar(transformers):
        model, info = model_class.from_pretrained(
            directory,
            use_safetensors=True,
            dtype=dtype,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # mismatches come back in info, and are refused below
            **_OFFLINE,
        )
    loading.check_loading_info(directory, info, tensors, model)
    loading.refuse_newly_initialised(model, str(directory), "Save the whole model with save_pretrained")
    return model


def _load_tokenizer(directory: Path) -> Any:
    """The directory's tokenizer, or None when it holds no tokenizer files."""
    import transformers

    names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
    if not any((directory / name).is_file() for name in names):
        return None
    with _as_load_error(directory, "tokenizer"):
        return transformers.AutoTokenizer.from_pretrained(directory, **_OFFLINE)


@contextlib.contextmanager
def _as_load_error(where: Path, what: str = "model") -> Iterator[None]:
    """Any failure inside transformers becomes a ModelLoadError naming the file; mitest's own pass unchanged."""
    try:
        yield
    except ModelLoadError:
        raise
    except Exception as error:  # transformers and safetensors raise OSError, ValueError, TypeError, SafetensorError
        detail = " ".join(str(error).split())
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise ModelLoadError(
            f"transformers could not load the {what} in {where} ({type(error).__name__}: {detail}); "
            "check the files, or save the model again with save_pretrained"
        ) from error


@contextlib.contextmanager
def _loading_bar(transformers: Any) -> Iterator[None]:
    """transformers' 'Loading weights' bar shows while mitest loads a model only where mitest's bars do."""
    logging = transformers.utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    if progress.enabled():
        logging.enable_progress_bar()
    else:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
        else:
            logging.disable_progress_bar()


@contextlib.contextmanager
def inference_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off) and no gradients, restoring every module's training flag after.

    Holds the model's run lock throughout: passes of one model from several threads run one after
    another (hooks and settings live on the shared modules), and a pass started inside another pass
    of the same model, in the same thread, raises :class:`NestedRunError`.
    """
    with _run_lock(model):
        training = [m for m in model.modules() if m.training]
        try:
            if training:  # a model already in eval mode is left alone (eval() walks every module)
                model.eval()
            with torch.no_grad():
                yield
        finally:
            for module in training:
                module.training = True


class _RunLock:
    """One model's lock, and the thread holding it (to tell a nested pass from a concurrent one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None


_RUN_LOCKS: weakref.WeakKeyDictionary[nn.Module, _RunLock] = weakref.WeakKeyDictionary()
_RUN_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _run_lock(model: nn.Module) -> Iterator[None]:
    """The lock of ``model`` (shared by every mt.Model wrapping it) for one run."""
    with _RUN_LOCKS_GUARD:
        run_lock = _RUN_LOCKS.setdefault(model, _RunLock())
    if run_lock.owner == threading.get_ident():
        raise NestedRunError(
            f"a forward pass of {type(model).__name__} was started inside a forward pass of the same model "
            "(e.g. a metric or property that calls mt.measure on the model being measured); it would see the "
            "outer run's hooks. Compute it before or after that run, or on a separate copy of the model"
        )
    with run_lock.lock:
        run_lock.owner = threading.get_ident()
        try:
            yield
        finally:
            run_lock.owner = None
