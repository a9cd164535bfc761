"""The CLIP image encoder: one place that turns a model name or config path and a weights tag or
checkpoint path into a model (`load_clip`), and the Ray Data callable class (`FrameEncoder`) that
holds one such model per actor and embeds batches of uint8 frames."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidclust.errors import VidclustError, first_line
from vidclust.models.gpu_meter import GpuMeter
from vidclust.models.model_hub import hub_reachable
from vidclust.runtime import current_node_id

log = logging.getLogger("vidclust")

LOCAL_DIR = "local-dir:"  # open_clip's schema: a folder with open_clip_config.json and the weights
HF_HUB = "hf-hub:"
CHECKPOINT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class EncoderSpec:
    """What identifies an embedding space, read from the model's config without building the
    model: stored in every Parquet file's metadata, compared on re-runs so that embeddings of
    different models or preprocessing never mix."""

    model: str  # open_clip model name (a config JSON's file stem), or local-dir:NAME / hf-hub:NAME
    weights: str  # a tag such as "openai", "none", or "file:<name>#sha256:<16 hex>"
    embed_dim: int
    image_size: int
    mean: tuple  # the model's own normalisation (open_clip preprocess_cfg), unless overridden
    std: tuple
    interpolation: str  # the model's resize interpolation (frames are resized by the decoder)

    def to_dict(self) -> dict:
        return {"model": self.model, "weights": self.weights, "embed_dim": self.embed_dim}

    def preprocess(self) -> dict:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "model_interpolation": self.interpolation}


def resolve_model_name(model: str) -> str:
    """An open_clip model name, registering a model-config JSON file first when `model` is a path."""
    import open_clip

    if model.endswith(".json") or os.path.sep in model:
        path = Path(model).expanduser()
        cfg = _read_json(path, "--model: model-config file")
        if "vision_cfg" not in cfg or "embed_dim" not in cfg:
            raise VidclustError(f"--model: {model} is not an open_clip model config "
                                "(needs embed_dim and vision_cfg)")
        open_clip.add_model_config(str(path))
        return path.stem
    if model not in open_clip.list_models():
        raise VidclustError(f"--model: unknown open_clip model {model!r}; give a name from "
                            "open_clip.list_models() or the path of a model-config JSON")
    return model


def weights_id(pretrained: str) -> str:
    """A stable name for the weights: the tag, or the checkpoint's file name and content hash."""
    if pretrained.lower() == "none":
        return "none"
    path = Path(pretrained).expanduser()
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        return f"file:{path.name}#sha256:{h.hexdigest()[:16]}"
    return pretrained


def load_clip(model: str, pretrained: str, device: str = "cpu") -> tuple[Any, Any]:
    """(open_clip model in eval mode on `device`, its tokenizer).

    `model`: an open_clip name or the path of a model-config JSON. `pretrained`: a weights tag
    (fetched from the hub, or the local cache), a checkpoint path, or "none" for random weights.
    """
    import open_clip

    if model.startswith((LOCAL_DIR, HF_HUB)):  # the weights come with the model
        clip, _, _ = _create(open_clip, model, None, device, offline=model.startswith(LOCAL_DIR))
        clip.eval()
        return clip, open_clip.get_tokenizer(model)
    name = resolve_model_name(model)
    weights: str | None = pretrained
    if pretrained.lower() == "none":
        weights = None
        warn_random_weights()
    elif Path(pretrained).expanduser().is_file():
        weights = str(Path(pretrained).expanduser())
    else:
        check_weights(open_clip, name, pretrained)
    try:
        clip, _, _ = _create(open_clip, name, weights, device, offline=True)
    except Exception:
        if weights is None or Path(weights).is_file():
            raise
        if not hub_reachable():
            raise VidclustError(
                f"cannot load the {pretrained!r} weights of {name}: they are not in the local cache and "
                "no model hub is reachable. Give a local checkpoint with --pretrained PATH "
                "(e.g. open_clip_pytorch_model.bin), or --pretrained none for random weights "
                "(plumbing checks only).") from None
        try:
            clip, _, _ = _create(open_clip, name, weights, device, offline=False)
        except Exception as exc:
            raise VidclustError(f"cannot load the {pretrained!r} weights of {name}: {exc}. "
                                "Give --pretrained PATH or --pretrained none.") from None
    clip.eval()
    return clip, open_clip.get_tokenizer(name)


@contextlib.contextmanager
def _root_warnings_muted():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def warn_random_weights() -> None:
    """The loud notice of --pretrained none: on the driver when a run starts (worker processes'
    output reaches the terminal only with -v), and in each process that builds such a model."""
    log.warning("!" * 72)
    log.warning("RANDOM WEIGHTS: --pretrained none. Embeddings carry no meaning; use this only")
    log.warning("to check the plumbing. Give --pretrained TAG or a checkpoint PATH for real runs.")
    log.warning("!" * 72)


def _create(open_clip, name: str, weights: str | None, device: str, offline: bool):
    previous = os.environ.get("HF_HUB_OFFLINE")
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        if weights is None:  # open_clip's own "initialized randomly" line: the banner says it
            with _root_warnings_muted():
                return open_clip.create_model_and_transforms(name, pretrained=weights, device=device)
        return open_clip.create_model_and_transforms(name, pretrained=weights, device=device)
    except RuntimeError as exc:
        if "checkpoint" in str(exc).lower() or "state_dict" in str(exc).lower():
            raise VidclustError(f"--pretrained {weights}: checkpoint does not fit model {name}: "
                                f"{first_line(exc)}") from None
        raise
    finally:
        if offline:
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = previous


def encoder_spec(model: str, pretrained: str, mean=None, std=None) -> EncoderSpec:
    """The spec of a model from its config (open_clip's model config and preprocess config: the
    weights tag's, or `open_clip_config.json` of a local-dir: model), without building it.
    `mean`/`std` override the model's normalisation when given. Checks that the weights exist."""
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    preprocess = merge_preprocess_dict(PreprocessCfg(), {})
    if model.startswith(LOCAL_DIR):
        folder = Path(model[len(LOCAL_DIR):]).expanduser()
        config = _read_json(folder / "open_clip_config.json", f"--model {model}")
        model_cfg = config.get("model_cfg")
        preprocess = merge_preprocess_dict(preprocess, config.get("preprocess_cfg") or {})
        checkpoint = next((folder / n for n in CHECKPOINT_NAMES if (folder / n).is_file()), None)
        if checkpoint is None:
            raise VidclustError(f"--model {model}: no weights beside its open_clip_config.json "
                                f"(looked for {', '.join(CHECKPOINT_NAMES)})")
        name, weights = LOCAL_DIR + folder.name, weights_id(str(checkpoint))
    elif model.startswith(HF_HUB):
        if not hub_reachable():
            raise VidclustError(f"--model {model} needs a model hub, and none is reachable: keep the "
                                "model in a folder and give --model local-dir:PATH")
        from open_clip.factory import _get_hf_config

        config = _get_hf_config(model[len(HF_HUB):])
        model_cfg = config.get("model_cfg")
        preprocess = merge_preprocess_dict(preprocess, config.get("preprocess_cfg") or {})
        name, weights = model, model
    else:
        name = resolve_model_name(model)
        model_cfg = open_clip.get_model_config(name)
        preprocess = merge_preprocess_dict(preprocess, (model_cfg or {}).get("preprocess_cfg") or {})
        check_weights(open_clip, name, pretrained)
        if pretrained.lower() != "none" and not Path(pretrained).expanduser().is_file():
            preprocess = merge_preprocess_dict(preprocess, open_clip.get_pretrained_cfg(name, pretrained))
        weights = weights_id(pretrained)
    if not isinstance(model_cfg, dict) or "embed_dim" not in model_cfg or "vision_cfg" not in model_cfg:
        raise VidclustError(f"--model {model}: its config has no embed_dim and vision_cfg")
    size = model_cfg["vision_cfg"].get("image_size") or preprocess.get("size") or 224
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise VidclustError(f"--model {model} takes {size[0]}x{size[1]} images: only square inputs are supported")
        size = size[0]
    return EncoderSpec(model=name, weights=weights, embed_dim=int(model_cfg["embed_dim"]), image_size=int(size),
                       mean=tuple(float(v) for v in (mean or preprocess["mean"])),
                       std=tuple(float(v) for v in (std or preprocess["std"])),
                       interpolation=str(preprocess.get("interpolation", "bicubic")))


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise VidclustError(f"{what}: {path} not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise VidclustError(f"{what}: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise VidclustError(f"{what}: {path} does not hold an object")
    return data


def check_weights(open_clip, name: str, pretrained: str) -> None:
    """`pretrained` is "none", a file, or a weights tag of the model."""
    if pretrained.lower() == "none" or Path(pretrained).expanduser().is_file():
        return
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise VidclustError(f"--pretrained: {pretrained!r} is neither a file nor a weights tag of "
                            f"{name} (tags: {', '.join(tags) or 'none'})")


def check_weights_reachable(spec: EncoderSpec, pretrained: str) -> None:
    """The weights of a tag must be in the local cache, or a model hub must answer: checked on the
    driver in seconds, rather than by every encoder actor after a long wait."""
    import open_clip

    if spec.model.startswith((LOCAL_DIR, HF_HUB)) or pretrained.lower() == "none" \
            or Path(pretrained).expanduser().is_file():
        return
    name = spec.model
    if not _tag_cached(open_clip.get_pretrained_cfg(name, pretrained)) and not hub_reachable():
        raise VidclustError(
            f"cannot load the {pretrained!r} weights of {name}: they are not in the local cache and "
            "no model hub is reachable. Give a local checkpoint with --pretrained PATH "
            "(e.g. open_clip_pytorch_model.bin), or --pretrained none for random weights "
            "(plumbing checks only).")


def check_checkpoint_fits(model: str, pretrained: str) -> None:
    """A checkpoint file (--pretrained PATH, or the weights of a local-dir: model) must load into
    the model: checked on the driver in about a second, rather than by every encoder actor after
    Ray has started. The model is built on the meta device (no memory, no initialisation) and a
    PyTorch checkpoint read there too (its tensors' shapes, not their data; safetensors are read
    memory-mapped), through open_clip's own loader, so what passes here loads in the actors."""
    from open_clip.factory import load_checkpoint

    found = _checkpoint_file(model, pretrained)
    if found is None:
        return
    name, checkpoint, what = found
    shapes = _checkpoint_shapes(checkpoint, what)
    clip = _meta_model(name)
    if clip is None:
        return
    try:  # safetensors cannot load onto the meta device: its tensors are read (memory-mapped)
        with warnings.catch_warnings():  # torch: "copying from a non-meta parameter ... is a no-op"
            warnings.filterwarnings("ignore", message=".*non-meta parameter")
            load_checkpoint(clip, str(checkpoint), device="cpu" if checkpoint.suffix == ".safetensors" else "meta")
    except NotImplementedError:
        return  # an operation the meta device lacks: the actors load it for real
    except Exception as exc:
        raise VidclustError(f"{what} does not fit model {name}: {_misfit(exc, clip, shapes)}: give the "
                            "checkpoint of this model, or the --model it was made with") from None


def _checkpoint_shapes(checkpoint: Path, what: str) -> dict[str, tuple]:
    """The shapes of a checkpoint's tensors, reading none of their data; one line when the file
    is not a checkpoint."""
    from open_clip.factory import load_state_dict

    try:
        if checkpoint.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(checkpoint), "pt") as f:
                return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
        state = load_state_dict(str(checkpoint), device="meta")
        return {key: tuple(t.shape) for key, t in state.items() if hasattr(t, "shape")}
    except Exception as exc:
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
        raise VidclustError(f"{what} is not a checkpoint that torch.load(weights_only=True) or safetensors reads "
                            f"({detail.group(1) if detail else first_line(exc).split('. ')[0]})") from None


def _checkpoint_file(model: str, pretrained: str) -> tuple[str, Path, str] | None:
    """(open_clip model name, checkpoint file, how the user named it) of a model whose weights
    are a file; None for a weights tag (its checkpoint is the model's own), a hub model, none."""
    from open_clip.factory import _find_checkpoint_in_dir

    if model.startswith(LOCAL_DIR):
        found = _find_checkpoint_in_dir(Path(model[len(LOCAL_DIR):]).expanduser())
        checkpoint = Path(found) if found else None
        name, what = model, f"--model {model}: its weights {found}"
    elif model.startswith(HF_HUB) or pretrained.lower() == "none" or not Path(pretrained).expanduser().is_file():
        return None
    else:
        name, checkpoint, what = resolve_model_name(model), Path(pretrained).expanduser(), f"--pretrained {pretrained}"
    if checkpoint is None or checkpoint.suffix in (".npz", ".npy"):  # big_vision: converted while loaded
        return None
    return name, checkpoint, what


def _meta_model(name: str) -> Any:
    """The open_clip model `name` on the meta device (None where it cannot be built so: the
    actors build it for real), no tower's weights fetched."""
    import open_clip
    import torch

    try:
        with torch.device("meta"), _root_warnings_muted():
            return open_clip.create_model(name, pretrained=None, load_weights=False, pretrained_image=False,
                                          pretrained_text=False, device="meta")
    except Exception:
        return None


def _misfit(exc: Exception, clip: Any, shapes: dict) -> str:
    """The first difference between a checkpoint and the model, and how many more: as torch's
    load_state_dict listed them, else (open_clip's conversions failed first) from the shapes."""
    text = str(exc)
    found = [f"{key} is [{theirs}] in the checkpoint, [{ours}] in the model" for key, theirs, ours in re.findall(
        r"size mismatch for ([^:\s]+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from "
        r"checkpoint, the shape in current model is torch\.Size\(\[([^\]]*)\]\)", text)]
    for label, keys in re.findall(r"(Missing|Unexpected) key\(s\) in state_dict: ([^\n]*)", text):
        found += [_missing(key) if label == "Missing" else _unexpected(key) for key in re.findall(r'"([^"]+)"', keys)]
    if not found and "Error(s) in loading state_dict" not in text:
        found = _shape_differences({key: tuple(t.shape) for key, t in clip.state_dict().items()}, shapes)
    if not found:
        return first_line(exc)
    more = len(found) - 1
    return found[0] + (f" (and {more} more difference{'s' if more > 1 else ''})" if more else "")


def _shape_differences(ours: dict[str, tuple], theirs: dict[str, tuple]) -> list[str]:
    def dims(shape: tuple) -> str:
        return ", ".join(str(d) for d in shape)

    found = [f"{key} is [{dims(shape)}] in the checkpoint, [{dims(ours[key])}] in the model"
             for key, shape in theirs.items() if key in ours and shape != ours[key]]
    found += [_missing(key) for key in ours if key not in theirs]
    return found + [_unexpected(key) for key in theirs if key not in ours]


def _missing(key: str) -> str:
    return f"the checkpoint lacks {key}"


def _unexpected(key: str) -> str:
    return f"the checkpoint has {key}, which the model lacks"


def _tag_cached(cfg: dict) -> bool:
    """Whether the weights of an open_clip pretrained config are on this machine already."""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        # open_clip's convention: "org/repo/" means the repo's default file, "org/repo/file" that file
        repo, names = (hub.strip("/"), CHECKPOINT_NAMES) if hub.endswith("/") else \
            (os.path.dirname(hub), (os.path.basename(hub),))
        return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)
    url = cfg.get("url", "")
    return bool(url) and (Path.home() / ".cache" / "clip" / os.path.basename(url)).is_file()


def normalise_frames(frames: np.ndarray, mean, std, device: str = "cpu"):
    """uint8 (N, H, W, 3) -> float32 torch tensor (N, 3, H, W) on `device`, normalised with
    CLIP's mean/std. The frames travel as uint8 (a quarter of the bytes) and are converted there;
    a torch tensor already there (NVDEC's frames on the GPU) stays where it is."""
    import torch

    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    return normalised_on_device(x.to(device, non_blocking=True), mean, std)


def normalised_on_device(x, mean, std):
    """uint8 torch frames (N, H, W, 3) -> float32 (N, 3, H, W) normalised with mean/std (3
    numbers each, or tensors already on x's device: a host value copied to a GPU would wait for
    its stream), on the device that holds them (only uint8 frames cross the bus)."""
    import torch

    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class _CudaFeed:
    """Host-to-GPU feeding of one thread's encoder calls: two pinned host slots and two GPU
    slots of `batch` uint8 frames, a copy stream of its own. Chunk k+1 is copied into pinned
    memory and on to the GPU (non-blocking, on the copy stream) while the GPU computes chunk k;
    events order each slot's reuse. Only uint8 frames cross the bus; they are normalised there."""

    def __init__(self, batch: int, shape: tuple, mean, std):
        import torch

        self.batch, self.shape = batch, shape
        self.mean = torch.tensor(mean, dtype=torch.float32, device="cuda")
        self.std = torch.tensor(std, dtype=torch.float32, device="cuda")
        self.stream = torch.cuda.Stream()  # copies
        self.compute = torch.cuda.Stream()  # this thread's kernels (another thread's run beside them)
        self.host = [torch.empty((batch,) + shape, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
        self.host_np = [h.numpy() for h in self.host]
        self.gpu = [torch.empty((batch,) + shape, dtype=torch.uint8, device="cuda") for _ in range(2)]
        self.copied = [torch.cuda.Event() for _ in range(2)]  # slot's H2D copy done
        self.consumed = [torch.cuda.Event() for _ in range(2)]  # slot's GPU frames read by the compute
        self.used = [False, False]

    def send(self, k: int, frames: np.ndarray):
        """Start chunk k (at most `batch` frames) on its way to slot k % 2 of the GPU."""
        import torch

        s, n = k % 2, len(frames)
        if self.used[s]:
            self.copied[s].synchronize()  # the pinned slot's previous copy has left it
        np.copyto(self.host_np[s][:n], frames)
        with torch.cuda.stream(self.stream):
            if self.used[s]:
                self.stream.wait_event(self.consumed[s])  # the GPU slot's previous frames are read
            self.gpu[s][:n].copy_(self.host[s][:n], non_blocking=True)
            self.copied[s].record(self.stream)
        self.used[s] = True

    def receive(self, k: int, n: int):
        """Chunk k's uint8 frames on the GPU, for the current (compute) stream."""
        import torch

        s = k % 2
        torch.cuda.current_stream().wait_event(self.copied[s])
        return self.gpu[s][:n]

    def done_with(self, k: int) -> None:
        import torch

        self.consumed[k % 2].record(torch.cuda.current_stream())


def _cuda_uuid() -> str | None:
    """The UUID of the GPU torch uses (NVML numbers the machine's GPUs, CUDA the visible ones)."""
    import torch

    try:
        return str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    except Exception:
        return None


class FrameEncoder:
    """Ray Data callable class: holds one CLIP model (on a GPU when the actor has one) and turns
    a batch with a uint8 `frame` column (N, H, W, 3) into an L2-normalised `embedding` column.

    Rows whose `frame_index` is negative are per-video status markers from the decoder: they pass
    through with a zero embedding and are never encoded.
    """

    def __init__(self, model: str, pretrained: str, mean, std, precision: str = "auto",
                 threads: int | None = None, compile: bool = False, batch_size: int = 128):
        import torch

        from vidclust.models.devices import reduced_precision, torch_device

        if threads:
            torch.set_num_threads(threads)
        self.device = torch_device()
        self.precision = reduced_precision(precision, self.device, "embed.encoder.precision")
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision or "")
        self.model, _ = load_clip(model, pretrained, device=self.device)
        self.dim = int(self.model.visual.output_dim)
        self.mean, self.std = tuple(mean), tuple(std)
        self.node_id = current_node_id()
        self.batch_size = max(1, int(batch_size))
        self.compiled = bool(compile) and self.device == "cuda"
        if compile and not self.compiled:
            log.warning("embed.encoder.compile=true needs a GPU: running the model uncompiled")
        if self.compiled:  # one input shape (see embed), so one compiled graph
            self.model.visual = torch.compile(self.model.visual, dynamic=False)
        self._local = threading.local()
        # the GPU's busy fraction while this actor holds it: read back through the status rows
        self.meter = GpuMeter(_cuda_uuid()) if self.device == "cuda" else None

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3), NumPy or torch -> float32 (N, D), each row of unit length. A compiled model gets
        chunks of exactly `batch_size` frames (the last one padded): a new shape would compile anew.
        On a GPU, NumPy frames go in chunks of `batch_size` through pinned memory, the next one's copy
        overlapping this one's compute (`_CudaFeed`); torch frames (NVDEC's) are already there."""
        if len(frames) == 0:
            return np.zeros((0, self.dim), np.float32)
        if self.device == "cuda" and isinstance(frames, np.ndarray):
            return self._embed_cuda(frames)
        if not self.compiled:
            return self._embed(frames)
        out = []
        for i in range(0, len(frames), self.batch_size):
            chunk = frames[i:i + self.batch_size]
            n = len(chunk)
            if n < self.batch_size and isinstance(chunk, np.ndarray):
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n,) + chunk.shape[1:], chunk.dtype)])
            elif n < self.batch_size:  # a torch tensor (NVDEC's frames, on the GPU)
                padded = chunk.new_zeros((self.batch_size,) + tuple(chunk.shape[1:]))
                padded[:n] = chunk
                chunk = padded
            out.append(self._embed(chunk)[:n])
        return np.concatenate(out)

    def _encode(self, x):
        """Normalised float frames on the model's device -> unit-length float32 embeddings there."""
        import torch

        with torch.inference_mode(), torch.autocast(self.device, dtype=self.autocast_dtype or torch.float32,
                                                    enabled=self.autocast_dtype is not None):
            z = self.model.encode_image(x)
        return torch.nn.functional.normalize(z.float(), dim=-1)

    def _embed(self, frames: np.ndarray) -> np.ndarray:
        x = normalise_frames(frames, self.mean, self.std, self.device)
        return self._encode(x).cpu().numpy().astype(np.float32)

    def _feed(self, shape: tuple) -> _CudaFeed:
        """This thread's feed (calls may run in two threads of the actor at once, see encoder_stage)."""
        feed = getattr(self._local, "feed", None)
        if feed is None or feed.shape != shape or feed.batch != self.batch_size:
            feed = self._local.feed = _CudaFeed(self.batch_size, shape, self.mean, self.std)
        return feed

    def _embed_cuda(self, frames: np.ndarray) -> np.ndarray:
        import torch

        b, n = self.batch_size, len(frames)
        feed = self._feed(tuple(frames.shape[1:]))
        out = torch.empty((n, self.dim), dtype=torch.float32, pin_memory=True)
        starts = list(range(0, n, b))
        feed.send(0, frames[:b])
        with torch.cuda.stream(feed.compute):
            for k, lo in enumerate(starts):
                m = min(b, n - lo)
                x = feed.receive(k, b if self.compiled else m)  # compiled: the whole slot, one shape
                x = normalised_on_device(x, feed.mean, feed.std)
                feed.done_with(k)
                z = self._encode(x)[:m]
                out[lo:lo + m].copy_(z, non_blocking=True)
                if k + 1 < len(starts):  # queued behind this chunk's kernels: its copy overlaps them
                    feed.send(k + 1, frames[starts[k + 1]:starts[k + 1] + b])
        feed.compute.synchronize()
        return out.numpy()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = batch.pop("frame")
        is_frame = batch["frame_index"] >= 0
        emb = np.zeros((len(frames), self.dim), np.float32)
        if is_frame.any():
            emb[is_frame] = self.embed(frames[is_frame])
        batch["embedding"] = emb
        if "info" in batch and not is_frame.all():  # status rows learn where they were encoded
            info = np.asarray(batch["info"], dtype=object).copy()
            gpu = {"gpu_busy": self.meter.reading()} if self.meter is not None else {}
            for r in np.flatnonzero(~is_frame):
                info[r] = json.dumps({**json.loads(info[r]), "encoder_node_id": self.node_id, **gpu})
            batch["info"] = info
        return batch

