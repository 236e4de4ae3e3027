"""Model weights: where each learned backend's weights come from, and finding them on a worker.

Weights are files of a Hugging Face Hub repository at a pinned commit, fetched with
huggingface_hub into its cache (or `--cache-dir` / $APPF_WEIGHTS_DIR), or a local directory
named by $APPF_WEIGHTS_<NAME> (e.g. APPF_WEIGHTS_PROMPTDA_VITL=/models/promptda). FoundationStereo
has no Hub repository: its directory must be provided by hand (see its `manual` text).

Loading never downloads unless $APPF_WEIGHTS_DOWNLOAD=1: worker images pre-fetch with
`appf models fetch NAME`. Offline mode ($HF_HUB_OFFLINE=1 or $APPF_OFFLINE=1) never touches the
network, even for `fetch`. A missing weight raises one `WeightsNotFoundError` that says what to
fetch and where to put it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from appf.schemas import AppfError

CACHE_ENV = "APPF_WEIGHTS_DIR"
DOWNLOAD_ENV = "APPF_WEIGHTS_DOWNLOAD"
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "APPF_OFFLINE")


class WeightsNotFoundError(AppfError):
    """The weights of a backend are not available here; the message says how to get them."""


@dataclass(frozen=True)
class WeightSpec:
    """One set of weights. `revision` is a full commit id on the Hub (None: not pinned yet, so
    `fetch` needs --revision); `manual` says how to obtain weights that are not on the Hub."""

    name: str
    repo_id: str | None
    revision: str | None
    files: tuple[str, ...]
    description: str
    licence: str
    manual: str = ""

    @property
    def env_var(self) -> str:
        return "APPF_WEIGHTS_" + re.sub(r"[^A-Za-z0-9]", "_", self.name).upper()

    @property
    def weights_id(self) -> str:
        return self.repo_id or self.name


_FS_MANUAL = (
    "FoundationStereo weights are not on the Hugging Face Hub. Download the folder {folder} "
    "(cfg.yaml + model_best_bp2.pth) from the Google Drive folder linked in the README of "
    "NVlabs/FoundationStereo (id 1VhPebc_mMxWKccrv7pdQLTvXYVcLYpsf; NVIDIA research-only "
    "licence), put both files in one directory of the worker image and set {env}=<that directory>; "
    "the code checkout goes in APPF_FOUNDATION_STEREO_CODE."
)

WEIGHTS: dict[str, WeightSpec] = {
    "promptda-vitl": WeightSpec(
        "promptda-vitl", "depth-anything/prompt-depth-anything-vitl-hf",
        "8ca53ced39ea362678fe95e12d6a14e33e563ae3",
        ("config.json", "model.safetensors", "preprocessor_config.json"),
        "PromptDepthAnything ViT-L (transformers port), 340M params, 1.36 GB", "Apache-2.0"),
    "promptda-vits": WeightSpec(
        "promptda-vits", "depth-anything/prompt-depth-anything-vits-hf", None,
        ("config.json", "model.safetensors", "preprocessor_config.json"),
        "PromptDepthAnything ViT-S (transformers port), 25M params, 100 MB", "Apache-2.0"),
    "moge-2-vitl-normal": WeightSpec(
        "moge-2-vitl-normal", "Ruicheng/moge-2-vitl-normal",
        "cb0e8bbd6b1e243589717c78e750b1ba4c093acf", ("model.pt",),
        "MoGe-2 ViT-L with normal head (metric point maps), 331M params, 1.3 GB",
        "MIT code; weights licence per the model page"),
    "moge-2-vits-normal": WeightSpec(
        "moge-2-vits-normal", "Ruicheng/moge-2-vits-normal",
        "679230677b4d282c6f304189a93e98e14f085902", ("model.pt",),
        "MoGe-2 ViT-S with normal head, 35M params", "MIT code; weights licence per the model page"),
    # SAM 2.1 (transformers Sam2VideoModel; the Hub repos carry config.json + model.safetensors).
    # Revisions: the commits other public projects pin for these repos (not re-checked against
    # the Hub from here: no Hub access on the build machine).
    "sam2.1-hiera-tiny": WeightSpec(
        "sam2.1-hiera-tiny", "facebook/sam2.1-hiera-tiny",
        "de431c4043854a71d8101e17995dfe596bf101a5", ("config.json", "model.safetensors"),
        "SAM 2.1 Hiera-T video segmentation (mask refinement), 39M params", "Apache-2.0"),
    "sam2.1-hiera-large": WeightSpec(
        "sam2.1-hiera-large", "facebook/sam2.1-hiera-large",
        "665f8e2ad61cf5f53d65644ff27c8ee525124610", ("config.json", "model.safetensors"),
        "SAM 2.1 Hiera-L video segmentation (mask refinement), 224M params, 0.9 GB", "Apache-2.0"),
    # RoboEngine (no package): EvfSam2Model.from_pretrained directories, used with the code
    # checkout in $APPF_ROBOENGINE_CODE. Not pinned: fetch with --revision.
    "roboengine-sam": WeightSpec(
        "roboengine-sam", "michaelyuanqwq/roboengine-sam", None, ("config.json",),
        "RoboEngine robot segmentation (EVF-SAM2 fine-tune, text prompt 'robot'), ~3 GB fp16",
        "MIT code; weights licence per the model page"),
    "evf-sam2-multitask": WeightSpec(
        "evf-sam2-multitask", "YxZhang/evf-sam2-multitask", None, ("config.json",),
        "EVF-SAM2 multitask: RoboEngine's tokenizer and its task-object segmentation "
        "('[semantic] <noun>' prompts)", "Apache-2.0 per the EVF-SAM repository"),
    "foundation-stereo-vitl": WeightSpec(
        "foundation-stereo-vitl", None, None, ("cfg.yaml", "model_best_bp2.pth"),
        "FoundationStereo ViT-L (folder 23-51-11), 375M params", "NVIDIA research-only",
        manual=_FS_MANUAL.format(folder="23-51-11", env="APPF_WEIGHTS_FOUNDATION_STEREO_VITL")),
    "foundation-stereo-vits": WeightSpec(
        "foundation-stereo-vits", None, None, ("cfg.yaml", "model_best_bp2.pth"),
        "FoundationStereo ViT-S (folder 11-33-40), 62M params", "NVIDIA research-only",
        manual=_FS_MANUAL.format(folder="11-33-40", env="APPF_WEIGHTS_FOUNDATION_STEREO_VITS")),
}


@dataclass(frozen=True)
class ResolvedWeights:
    """A directory holding every file of `spec`, and the revision it was taken at
    ("local:<dir>" for a directory given by hand)."""

    spec: WeightSpec
    directory: Path
    revision: str


def weight_spec(name: str) -> WeightSpec:
    if name not in WEIGHTS:
        raise WeightsNotFoundError(f"unknown weights {name!r}; known: {sorted(WEIGHTS)}")
    return WEIGHTS[name]


def offline() -> bool:
    """True when $HF_HUB_OFFLINE or $APPF_OFFLINE is set to a true value."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in OFFLINE_ENVS)


def cache_dir(override: str | Path | None = None) -> Path | None:
    """The cache to use: `override`, else $APPF_WEIGHTS_DIR, else huggingface_hub's default (None)."""
    value = override or os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else None


def _missing_files(directory: Path, spec: WeightSpec) -> list[str]:
    return [f for f in spec.files if not (directory / f).is_file()]


def _not_found(spec: WeightSpec, why: str) -> WeightsNotFoundError:
    if spec.repo_id is None:
        how = spec.manual
    elif spec.revision is None:
        # loading reads the cache only at a pinned revision, so fetching alone would not help
        how = (f"no revision of {spec.repo_id} is pinned, so it is never loaded from the cache; "
               f"fetch one commit with `appf models fetch {spec.name} --revision <40-character "
               f"commit id>` and set {spec.env_var}=<the directory that command prints> (a "
               f"directory holding {', '.join(spec.files)})")
    else:
        where = cache_dir() or "the huggingface_hub cache (~/.cache/huggingface/hub or $HF_HUB_CACHE)"
        how = (f"fetch them with `appf models fetch {spec.name}` (Hub repo {spec.repo_id} at "
               f"revision {spec.revision or '<pass --revision>'}, files {', '.join(spec.files)}) "
               f"into {where} -- use `--cache-dir DIR` and set {CACHE_ENV}=DIR on the workers to "
               f"ship a separate cache -- or set {spec.env_var}=<a directory holding those files>")
    return WeightsNotFoundError(f"weights {spec.name!r} not found: {why}. To fix: {how}")


def _from_local(spec: WeightSpec, path: str | Path) -> ResolvedWeights:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise _not_found(spec, f"{directory} (from {spec.env_var} or --weights) is not a directory")
    missing = _missing_files(directory, spec)
    if missing:
        raise _not_found(spec, f"{directory} lacks {', '.join(missing)}")
    return ResolvedWeights(spec, directory, f"local:{directory}")


def _from_hub(spec: WeightSpec, revision: str, cache: Path | None, local_only: bool) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise WeightsNotFoundError(
            f"weights {spec.name!r} come from the Hugging Face Hub and huggingface_hub is not "
            f"installed (pip install huggingface_hub), or set {spec.env_var}=<a directory>") from e

    paths = [Path(hf_hub_download(repo_id=spec.repo_id, filename=f, revision=revision,
                                  cache_dir=cache, local_files_only=local_only))
             for f in spec.files]
    return paths[0].parent


def resolve_weights(name: str, local_path: str | Path | None = None,
                    download: bool | None = None) -> ResolvedWeights:
    """Find the weights `name` for loading: `local_path`, else $APPF_WEIGHTS_<NAME>, else the
    cache at the pinned revision; downloads only if `download` (default: $APPF_WEIGHTS_DOWNLOAD)
    and not offline. Raises WeightsNotFoundError saying what to fetch and where."""
    spec = weight_spec(name)
    local = local_path or os.environ.get(spec.env_var)
    if local:
        return _from_local(spec, local)
    if spec.repo_id is None:
        raise _not_found(spec, f"{spec.env_var} is not set")
    if spec.revision is None:
        raise _not_found(spec, "no pinned revision for this repository yet")
    cache = cache_dir()
    try:
        return ResolvedWeights(spec, _from_hub(spec, spec.revision, cache, True), spec.revision)
    except WeightsNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises several kinds for "not cached"
        cached_error = e
    if download is None:
        download = os.environ.get(DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if offline() or not download:
        reason = ("offline mode is on (HF_HUB_OFFLINE / APPF_OFFLINE)" if offline()
                  else f"not in the cache ({type(cached_error).__name__}) and downloads at load "
                       f"time are off ({DOWNLOAD_ENV} unset)")
        raise _not_found(spec, reason) from cached_error
    try:
        return ResolvedWeights(spec, _from_hub(spec, spec.revision, cache, False), spec.revision)
    except Exception as e:  # noqa: BLE001
        raise _not_found(spec, f"download failed ({type(e).__name__}: {e})") from e


def fetch_weights(name: str, cache: str | Path | None = None,
                  revision: str | None = None) -> ResolvedWeights:
    """Download the weights `name` into the cache (`cache`, $APPF_WEIGHTS_DIR or the default) at
    `revision` (default: the pinned one); a no-op when already cached. For worker images."""
    spec = weight_spec(name)
    if spec.repo_id is None:
        raise WeightsNotFoundError(f"weights {name!r} cannot be fetched automatically. {spec.manual}")
    rev = revision or spec.revision
    if rev is None:
        raise WeightsNotFoundError(
            f"weights {name!r} ({spec.repo_id}) have no pinned revision; pass --revision <commit id> "
            "(a full 40-character commit from the repository's history)")
    directory = cache_dir(cache)
    try:
        return ResolvedWeights(spec, _from_hub(spec, rev, directory, True), rev)
    except WeightsNotFoundError:
        raise
    except Exception:  # noqa: BLE001 - not cached yet
        pass
    if offline():
        raise WeightsNotFoundError(
            f"weights {name!r} are not in {directory or 'the default cache'} and offline mode is "
            f"on (unset HF_HUB_OFFLINE / APPF_OFFLINE to fetch {spec.repo_id}@{rev})")
    try:
        return ResolvedWeights(spec, _from_hub(spec, rev, directory, False), rev)
    except Exception as e:  # noqa: BLE001
        raise WeightsNotFoundError(
            f"fetching {spec.repo_id}@{rev} ({', '.join(spec.files)}) failed: "
            f"{type(e).__name__}: {e}") from e
