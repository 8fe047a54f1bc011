"""Registry of upstream checkpoints: where each lives and the numerics it was trained with.

A record is everything a builder needs to use a checkpoint correctly without opening it:
URL, file layout, activation / LayerNorm epsilon / normalization, native resolution, class
count, whether it carries a pre-logits layer, and its license. The architecture itself comes
from the builder; the registry never duplicates it.

Which upstream file a tag means (one policy for every family): a tag names exactly one file.
Where upstream published several runs for one variant, data and resolution (the AugReg .npz
files), the tag means the run timm's pretrained config for that model names: the file timm's
hub copy was converted from, so the tag and its hub copy (`hub_copy`) hold the same weights and
timm's published accuracy applies to both. Families released only as timm hub copies (Swin,
PVT v2, Swin V2, XCiT, ConvMixer, MViT v2, OpenAI CLIP) have one file per tag by construction.

Trust: hub files are pinned to a hub revision, and carry a sha256 and size, where two independent
public sources establish them (vit_zoo/data/weights_pins.tsv, which names the sources); every
other file is trusted on first use (vit_zoo.weights.integrity). `vit-zoo list --verbose` shows
which is which.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

from vit_zoo import numerics as nm
from vit_zoo.numerics import Numerics

GOOGLE_BUCKET = "https://storage.googleapis.com/vit_models"
MIXER_BUCKET = "https://storage.googleapis.com/mixer_models"
HF_TIMM = "https://huggingface.co/timm"
PINS = Path(__file__).parent.parent / "data" / "weights_pins.tsv"
_REVISION = re.compile(r"/resolve/([0-9a-f]{40})/")


@dataclass(frozen=True)
class WeightsRecord:
    """One upstream checkpoint of one architecture variant."""

    family: str
    variant: str
    tag: str
    url: str
    layout: str
    numerics: Numerics
    resolution: int
    classes: int  # 0: the file has no classification head
    representation_size: int | None = None  # pre-logits (Dense + tanh) width, if the file has one
    pooling: str = "token"
    sha256: str | None = None
    license: str = "Apache-2.0"
    description: str = ""
    #: Evaluation center-crop fraction of the upstream pretrained config, where it is not the
    #: default of vit_zoo.transforms.for_record (bicubic).
    crop: float | None = None
    size: int | None = None  # bytes, where a source gives them (explains a mismatch)
    #: False where upstream's classification head is not a valid classifier (the ViT paper's
    #: ImageNet-21k files: timm drops it): the backbone and pre-logits load, the head does not.
    valid_head: bool = True
    hub_copy: str | None = None  # the timm hub repo holding the same weights (Google .npz tags)

    @property
    def revision(self) -> str | None:
        """The hub commit the URL is pinned to, or None (a moving branch, or no hub)."""
        match = _REVISION.search(self.url)
        return match.group(1) if match else None

    @property
    def filename(self) -> str:
        """Cache file name: unique per record and per upstream address (a record whose URL
        changes, to another run or another revision, never reuses a file cached from the old
        one); keeps the layout's extension."""
        extension = ".npz" if self.layout == "google_npz" else ".safetensors"
        safe_variant = self.variant.replace("/", "")
        safe_tag = self.tag.replace(":", "-").replace("+", "_")
        address = hashlib.sha256(self.url.encode()).hexdigest()[:8]
        return f"{self.family}-{safe_variant}-{safe_tag}-{address}{extension}"


_REGISTRY: dict[tuple[str, str], dict[str, WeightsRecord]] = {}


@dataclass(frozen=True)
class Pin:
    """One row of weights_pins.tsv: the revision, sha256 and size public sources state for a
    registered file (None where they do not)."""

    url: str  # as registered, unpinned
    revision: str | None
    sha256: str | None
    size: int | None
    sources: tuple[str, ...]


def read_pins(path: Path = PINS) -> dict[str, Pin]:
    """{unpinned url: Pin} from vit_zoo/data/weights_pins.tsv."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        url, revision, sha256, size, sources = line.split("\t")
        pins[url] = Pin(url, None if revision == "-" else revision,
                        None if sha256 == "-" else sha256, None if size == "-" else int(size),
                        tuple(sources.split("; ")))
    return pins


_PINS = read_pins()


def _pinned(record: WeightsRecord) -> WeightsRecord:
    """The record with its pin applied: the URL at the pinned revision, sha256 and size (where
    the pin has them)."""
    pin = _PINS.get(record.url)
    if pin is None:
        return record
    url = record.url
    if pin.revision:
        url = url.replace("/resolve/main/", f"/resolve/{pin.revision}/")
    return replace(record, url=url, sha256=pin.sha256, size=pin.size)


def register(record: WeightsRecord) -> WeightsRecord:
    """Add a record (with its pin, if weights_pins.tsv has one); tags are unique per
    (family, variant)."""
    record = _pinned(record)
    tags = _REGISTRY.setdefault((record.family, record.variant), {})
    if record.tag in tags:
        raise ValueError(
            f"Duplicate weights tag {record.tag!r} for {record.family} {record.variant}."
        )
    tags[record.tag] = record
    return record


def tags_for(family: str, variant: str) -> list[str]:
    """Registered tags of one variant, in registration order."""
    return list(_REGISTRY.get((family, variant), {}))


def all_records() -> list[WeightsRecord]:
    """Every registered record, in registration order."""
    return [record for tags in _REGISTRY.values() for record in tags.values()]


def records_for(family: str, variant: str) -> list[WeightsRecord]:
    return list(_REGISTRY.get((family, variant), {}).values())


def lookup(family: str, variant: str, tag: str) -> WeightsRecord:
    """The record for a tag, or a ValueError listing the tags that exist."""
    tags = _REGISTRY.get((family, variant), {})
    if tag not in tags:
        known = ", ".join(repr(t) for t in tags) or "none"
        raise ValueError(
            f"Unknown weights {tag!r} for {family} {variant}. Registered tags: {known}. "
            "Pass weights=None for random initialization, or the path of a local "
            ".npz / .safetensors / .weights.h5 / .keras file."
        )
    return tags[tag]


# --- ViT ------------------------------------------------------------------------------------
# AugReg ("How to train your ViT?", Steiner et al. 2021) file stems per variant, the runs timm's
# configs name (see the module docstring): the ImageNet-21k pre-training run, the learning rate
# of its 224 px ImageNet fine-tune, and the run + learning rate of the 384 px fine-tune. (The
# vision_transformer README recommends other runs for some 384 px fine-tunes and for the B/8 and
# L/16 pre-training; those files exist but are not what these tags mean.)
_AUGREG = {
    "Ti/16": ("Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "0.03",
              "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "S/32": ("S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03",
             "S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "S/16": ("S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03",
             "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "B/32": ("B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0", "0.03",
             "B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0", "0.03"),
    "B/16": ("B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "0.01",
             "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "0.01"),
    "B/8": ("B_8-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "0.01", None, None),
    "L/16": ("L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1", "0.01",
             "L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1", "0.01"),
}
# The original ViT paper release: ImageNet-21k pre-training (with pre-logits; its head is not a
# valid classifier, so timm drops it) and its ImageNet fine-tunes at 384 px (B/16 and L/16 also
# at 224 px).
_ORIGINAL = {"B/16": 768, "B/32": 768, "L/16": 1024, "L/32": 1024, "H/14": 1280}
_ORIGINAL_FT_224 = ("B/16", "L/16")
# The fine-tunes timm converted (its "jx_" files, now on the hub): (variant, resolution) -> repo.
_ORIGINAL_HUB_COPIES = {
    ("B/16", 384): "timm/vit_base_patch16_384.orig_in21k_ft_in1k",
    ("B/16", 224): "timm/vit_base_patch16_224.orig_in21k_ft_in1k",
    ("L/32", 384): "timm/vit_large_patch32_384.orig_in21k_ft_in1k",
}
# timm's hub names for the variants, used for the safetensors copies.
_TIMM_ARCH = {
    "Ti/16": "vit_tiny_patch16", "S/32": "vit_small_patch32", "S/16": "vit_small_patch16",
    "B/32": "vit_base_patch32", "B/16": "vit_base_patch16", "B/8": "vit_base_patch8",
    "L/32": "vit_large_patch32", "L/16": "vit_large_patch16", "H/14": "vit_huge_patch14",
}
# (variant, timm tag, resolution, classes, numerics): timm-hub copies registered as tags.
_TIMM_HUB = [
    ("B/16", "augreg2_in21k_ft_in1k", 224, 1000, nm.TIMM_VIT),
    ("B/8", "augreg2_in21k_ft_in1k", 224, 1000, nm.TIMM_VIT),
    ("B/8", "augreg_in21k_ft_in1k", 224, 1000, nm.GOOGLE),
    ("S/16", "augreg_in1k", 224, 1000, nm.GOOGLE),
    ("B/16", "augreg_in1k", 224, 1000, nm.GOOGLE),
    ("B/32", "augreg_in1k", 224, 1000, nm.GOOGLE),
    ("L/32", "orig_in21k", 224, 0, nm.GOOGLE),
    ("H/14", "orig_in21k", 224, 0, nm.GOOGLE),
]


def _hub_copy(variant: str, resolution: int, tag: str) -> str:
    return f"timm/{_TIMM_ARCH[variant]}_{resolution}.{tag}"


def _register_vit() -> None:
    for variant, (pretrain, lr224, run384, lr384) in _AUGREG.items():
        base = f"{GOOGLE_BUCKET}/augreg/"
        about = "AugReg (Steiner et al. 2021)"
        register(WeightsRecord(
            "vit", variant, "augreg-imagenet21k", f"{base}{pretrain}.npz", "google_npz",
            nm.GOOGLE, 224, 21843, description=f"{about}, ImageNet-21k pre-training",
            hub_copy=_hub_copy(variant, 224, "augreg_in21k")))
        register(WeightsRecord(
            "vit", variant, "augreg-imagenet21k+imagenet2012",
            f"{base}{pretrain}--imagenet2012-steps_20k-lr_{lr224}-res_224.npz", "google_npz",
            nm.GOOGLE, 224, 1000, description=f"{about}, fine-tuned on ImageNet at 224 px",
            hub_copy=_hub_copy(variant, 224, "augreg_in21k_ft_in1k")))
        if run384:
            register(WeightsRecord(
                "vit", variant, "augreg-imagenet21k+imagenet2012-384",
                f"{base}{run384}--imagenet2012-steps_20k-lr_{lr384}-res_384.npz", "google_npz",
                nm.GOOGLE, 384, 1000, description=f"{about}, fine-tuned on ImageNet at 384 px",
                hub_copy=_hub_copy(variant, 384, "augreg_in21k_ft_in1k")))
    for variant, representation in _ORIGINAL.items():
        stem = "ViT-" + variant.replace("/", "_")
        about = "ViT paper release (Dosovitskiy et al. 2021)"
        register(WeightsRecord(
            "vit", variant, "imagenet21k", f"{GOOGLE_BUCKET}/imagenet21k/{stem}.npz",
            "google_npz", nm.GOOGLE, 224, 21843, representation_size=representation,
            valid_head=False, hub_copy=_hub_copy(variant, 224, "orig_in21k"),
            description=f"{about}, ImageNet-21k pre-training, with pre-logits; its head is not "
                        "a valid classifier"))
        if variant != "H/14":
            register(WeightsRecord(
                "vit", variant, "imagenet21k+imagenet2012",
                f"{GOOGLE_BUCKET}/imagenet21k+imagenet2012/{stem}.npz", "google_npz",
                nm.GOOGLE, 384, 1000, description=f"{about}, fine-tuned on ImageNet at 384 px",
                hub_copy=_ORIGINAL_HUB_COPIES.get((variant, 384))))
        if variant in _ORIGINAL_FT_224:
            register(WeightsRecord(
                "vit", variant, "imagenet21k+imagenet2012-224",
                f"{GOOGLE_BUCKET}/imagenet21k+imagenet2012/{stem}-224.npz", "google_npz",
                nm.GOOGLE, 224, 1000, description=f"{about}, fine-tuned on ImageNet at 224 px",
                hub_copy=_ORIGINAL_HUB_COPIES.get((variant, 224))))
    for variant, tag, resolution, classes, numerics in _TIMM_HUB:
        repo = f"{_TIMM_ARCH[variant]}_{resolution}.{tag}"
        register(WeightsRecord(
            "vit", variant, f"timm:{tag}", f"{HF_TIMM}/{repo}/resolve/main/model.safetensors",
            "timm_safetensors", numerics, resolution, classes,
            description=f"timm hub copy {repo}"))


# --- Hybrid ResNet + ViT -----------------------------------------------------------------------
# AugReg hybrids: (variant, i21k run, 224 px fine-tune run and lr, 384 px fine-tune run and lr),
# the files timm points at.
_AUGREG_HYBRID = [
    ("R+Ti/16", "R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0",
     "R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "0.03",
     "R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "0.03"),
    ("R26+S/32", "R26_S_32-i21k-300ep-lr_0.001-aug_medium2-wd_0.03-do_0.0-sd_0.0",
     "R26_S_32-i21k-300ep-lr_0.001-aug_light0-wd_0.03-do_0.1-sd_0.1", "0.03",
     "R26_S_32-i21k-300ep-lr_0.001-aug_medium2-wd_0.03-do_0.0-sd_0.0", "0.03"),
    ("R50+L/32", "R50_L_32-i21k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0",
     "R50_L_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1", "0.01",
     "R50_L_32-i21k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0", "0.01"),
]
_TIMM_HYBRID_ARCH = {"R+Ti/16": "vit_tiny_r_s16_p8_{}", "R26+S/32": "vit_small_r26_s32_{}",
                     "R50+L/32": "vit_large_r50_s32_{}"}
# timm hub copies: (variant, repo, resolution, classes). The weights were trained by Google in
# JAX, so they are registered with Google's numerics; timm itself runs them with its own
# (exact GELU, GroupNorm eps 1e-5, sqrt(var + 1e-8) standardization).
_TIMM_HYBRID = [
    ("R50+B/16", "vit_base_r50_s16_384.orig_in21k_ft_in1k", 384, 1000),
    ("R50+B/16", "vit_base_r50_s16_224.orig_in21k", 224, 0),
    ("R26+S/32", "vit_small_r26_s32_224.augreg_in21k_ft_in1k", 224, 1000),
    ("R+Ti/16", "vit_tiny_r_s16_p8_224.augreg_in21k_ft_in1k", 224, 1000),
    ("R50+L/32", "vit_large_r50_s32_224.augreg_in21k_ft_in1k", 224, 1000),
]


def _register_hybrid() -> None:
    about = "ViT paper release (Dosovitskiy et al. 2021)"
    register(WeightsRecord(
        "hybrid", "R50+B/16", "imagenet21k", f"{GOOGLE_BUCKET}/imagenet21k/R50+ViT-B_16.npz",
        "google_npz", nm.GOOGLE, 224, 21843, representation_size=768, valid_head=False,
        hub_copy="timm/vit_base_r50_s16_224.orig_in21k",
        description=f"{about}, ImageNet-21k pre-training, with pre-logits; its head is not a "
                    "valid classifier"))
    register(WeightsRecord(
        "hybrid", "R50+B/16", "imagenet21k+imagenet2012",
        f"{GOOGLE_BUCKET}/imagenet21k+imagenet2012/R50+ViT-B_16.npz", "google_npz", nm.GOOGLE,
        384, 1000, description=f"{about}, fine-tuned on ImageNet at 384 px",
        hub_copy="timm/vit_base_r50_s16_384.orig_in21k_ft_in1k"))
    base, about = f"{GOOGLE_BUCKET}/augreg/", "AugReg (Steiner et al. 2021)"
    for variant, pretrain, run224, lr224, run384, lr384 in _AUGREG_HYBRID:
        arch = _TIMM_HYBRID_ARCH[variant]
        register(WeightsRecord(
            "hybrid", variant, "augreg-imagenet21k", f"{base}{pretrain}.npz", "google_npz",
            nm.GOOGLE, 224, 21843, description=f"{about}, ImageNet-21k pre-training",
            hub_copy=f"timm/{arch.format(224)}.augreg_in21k"))
        register(WeightsRecord(
            "hybrid", variant, "augreg-imagenet21k+imagenet2012",
            f"{base}{run224}--imagenet2012-steps_20k-lr_{lr224}-res_224.npz", "google_npz",
            nm.GOOGLE, 224, 1000, description=f"{about}, fine-tuned on ImageNet at 224 px",
            hub_copy=f"timm/{arch.format(224)}.augreg_in21k_ft_in1k"))
        register(WeightsRecord(
            "hybrid", variant, "augreg-imagenet21k+imagenet2012-384",
            f"{base}{run384}--imagenet2012-steps_20k-lr_{lr384}-res_384.npz", "google_npz",
            nm.GOOGLE, 384, 1000, description=f"{about}, fine-tuned on ImageNet at 384 px",
            hub_copy=f"timm/{arch.format(384)}.augreg_in21k_ft_in1k"))
    for variant, repo, resolution, classes in _TIMM_HYBRID:
        register(WeightsRecord(
            "hybrid", variant, "timm:" + repo.split(".", 1)[1],
            f"{HF_TIMM}/{repo}/resolve/main/model.safetensors", "timm_safetensors", nm.GOOGLE,
            resolution, classes, description=f"timm hub copy {repo}"))


# --- MLP-Mixer ---------------------------------------------------------------------------------
# (variant, folder, tag, classes, note). "gsam" file names follow the bucket's naming; the others
# are the names google-research/vision_transformer and its users load.
_MIXER = [
    ("B/16", "imagenet21k", "imagenet21k", 21843, "ImageNet-21k pre-training"),
    ("L/16", "imagenet21k", "imagenet21k", 21843, "ImageNet-21k pre-training"),
    ("B/16", "imagenet1k", "imagenet2012", 1000, "ImageNet-1k training"),
    ("L/16", "imagenet1k", "imagenet2012", 1000, "ImageNet-1k training"),
    ("B/16", "sam", "sam", 1000, "ImageNet-1k with SAM (Chen et al. 2021)"),
    ("B/32", "sam", "sam", 1000, "ImageNet-1k with SAM (Chen et al. 2021)"),
    ("S/32", "gsam", "gsam", 1000, "ImageNet-1k with GSAM (Zhuang et al. 2022)"),
    ("S/16", "gsam", "gsam", 1000, "ImageNet-1k with GSAM (Zhuang et al. 2022)"),
    ("B/32", "gsam", "gsam", 1000, "ImageNet-1k with GSAM (Zhuang et al. 2022)"),
    ("B/16", "gsam", "gsam", 1000, "ImageNet-1k with GSAM (Zhuang et al. 2022)"),
]
_MIXER_HUB_COPIES = {("B/16", "imagenet21k"): "timm/mixer_b16_224.goog_in21k",
                     ("L/16", "imagenet21k"): "timm/mixer_l16_224.goog_in21k"}
_TIMM_MIXER = [
    ("B/16", "mixer_b16_224.goog_in21k_ft_in1k", 1000),
    ("L/16", "mixer_l16_224.goog_in21k_ft_in1k", 1000),
]


def _register_mixer() -> None:
    for variant, folder, tag, classes, about in _MIXER:
        stem = "Mixer-" + variant.replace("/", "_")
        register(WeightsRecord(
            "mixer", variant, tag, f"{MIXER_BUCKET}/{folder}/{stem}.npz", "google_npz",
            nm.GOOGLE, 224, classes, pooling="avg", description=f"MLP-Mixer release, {about}",
            hub_copy=_MIXER_HUB_COPIES.get((variant, tag))))
    for variant, repo, classes in _TIMM_MIXER:
        register(WeightsRecord(
            "mixer", variant, "timm:" + repo.split(".", 1)[1],
            f"{HF_TIMM}/{repo}/resolve/main/model.safetensors", "timm_safetensors", nm.GOOGLE,
            224, classes, pooling="avg", description=f"timm hub copy {repo}"))


# --- Swin ---------------------------------------------------------------------------------------
# The Microsoft releases' canonical safetensors copies are timm's hub repos (the originals are
# pickled .pth files, which vit_zoo does not read). (variant, window, resolution, tags).
_SWIN = [
    ("T", 7, 224, ("ms_in1k", "ms_in22k", "ms_in22k_ft_in1k")),
    ("S", 7, 224, ("ms_in1k", "ms_in22k", "ms_in22k_ft_in1k")),
    ("B", 7, 224, ("ms_in1k", "ms_in22k", "ms_in22k_ft_in1k")),
    ("B", 12, 384, ("ms_in1k", "ms_in22k", "ms_in22k_ft_in1k")),
    ("L", 7, 224, ("ms_in22k", "ms_in22k_ft_in1k")),
    ("L", 12, 384, ("ms_in22k", "ms_in22k_ft_in1k")),
]
_SWIN_NAMES = {"T": "tiny", "S": "small", "B": "base", "L": "large"}


def _register_swin() -> None:
    for variant, window, resolution, tags in _SWIN:
        arch = f"swin_{_SWIN_NAMES[variant]}_patch4_window{window}_{resolution}"
        for tag in tags:
            repo = f"{arch}.{tag}"
            register(WeightsRecord(
                "swin", variant, tag if resolution == 224 else f"{tag}-384",
                f"{HF_TIMM}/{repo}/resolve/main/model.safetensors", "timm_safetensors", nm.SWIN,
                resolution, 21841 if tag == "ms_in22k" else 1000, pooling="avg", license="MIT",
                description=f"Microsoft Swin release, window {window} (timm hub copy {repo})"))


# --- CLIP ---------------------------------------------------------------------------------------
# OpenAI's releases (originally TorchScript .pt files, which vit_zoo does not read) as the
# safetensors copies in OpenAI / open_clip key layout that open_clip itself downloads from the
# timm hub repos. (variant, repo, resolution)
_OPENAI_CLIP = [
    ("B/32", "vit_base_patch32_clip_224.openai", 224),
    ("B/16", "vit_base_patch16_clip_224.openai", 224),
    ("L/14", "vit_large_patch14_clip_224.openai", 224),
    ("L/14@336", "vit_large_patch14_clip_336.openai", 336),
]


def _register_clip() -> None:
    for variant, repo, resolution in _OPENAI_CLIP:
        register(WeightsRecord(
            "clip", variant, "openai", f"{HF_TIMM}/{repo}/resolve/main/open_clip_model.safetensors",
            "open_clip_safetensors", nm.OPENAI_CLIP, resolution, 0, license="MIT",
            description=f"OpenAI CLIP (Radford et al. 2021), open_clip layout (hub copy {repo})"))


# --- PVT v2 -------------------------------------------------------------------------------------
# The authors' ImageNet-1k weights (whai362/PVT, pickled .pth) as timm's hub safetensors copies.
_PVT_V2 = ("b0", "b1", "b2", "b3", "b4", "b5", "b2_li")


def _register_pvt_v2() -> None:
    for variant in _PVT_V2:
        repo = f"pvt_v2_{variant}.in1k"
        register(WeightsRecord(
            "pvt_v2", variant, "in1k", f"{HF_TIMM}/{repo}/resolve/main/model.safetensors",
            "timm_safetensors", nm.PVT_V2, 224, 1000, pooling="avg",
            description=f"PVT v2 (Wang et al. 2021), ImageNet-1k (timm hub copy {repo})"))


# --- Swin V2 ------------------------------------------------------------------------------------
# The Microsoft releases (pickled .pth files upstream, which vit_zoo does not read) as timm's hub
# copies: (variant, timm model, hub tag, resolution, classes). The vit_zoo tag is the hub tag
# and the window ("ms_in1k-w8", "ms_in22k_ft_in1k-w12to16"); the builder reads the window (and
# for the 12to16 / 12to24 fine-tunes the pre-training windows) off the model name in the URL
# (vit_zoo.models.swin_v2.record_windows). Crop 0.9 (1.0 at 384 px), as timm's configs say.
_SWIN_V2 = [
    ("T", "swinv2_tiny_window8_256", "ms_in1k", 256, 1000),
    ("T", "swinv2_tiny_window16_256", "ms_in1k", 256, 1000),
    ("S", "swinv2_small_window8_256", "ms_in1k", 256, 1000),
    ("S", "swinv2_small_window16_256", "ms_in1k", 256, 1000),
    ("B", "swinv2_base_window8_256", "ms_in1k", 256, 1000),
    ("B", "swinv2_base_window16_256", "ms_in1k", 256, 1000),
    ("B", "swinv2_base_window12_192", "ms_in22k", 192, 21841),
    ("B", "swinv2_base_window12to16_192to256", "ms_in22k_ft_in1k", 256, 1000),
    ("B", "swinv2_base_window12to24_192to384", "ms_in22k_ft_in1k", 384, 1000),
]


def _register_swin_v2() -> None:
    for variant, arch, hub_tag, resolution, classes in _SWIN_V2:
        repo, window = f"{arch}.{hub_tag}", arch.split("_window")[1].split("_")[0]
        register(WeightsRecord(
            "swin_v2", variant, f"{hub_tag}-w{window}",
            f"{HF_TIMM}/{repo}/resolve/main/model.safetensors", "timm_safetensors", nm.SWIN,
            resolution, classes, pooling="avg", license="MIT",
            crop=1.0 if resolution > 256 else 0.9,
            description=f"Microsoft Swin V2 release (Liu et al. 2022), window {window}, "
                        f"{resolution} px (timm hub copy {repo})"))


# --- XCiT ---------------------------------------------------------------------------------------
# Facebook's releases (facebookresearch/xcit: pickled .pth files, which vit_zoo does not read) as
# timm's hub copies: every shape at 224 px, ImageNet-1k plain and with DeiT-style distillation
# (one head: the distilled files have the same keys), and distilled at 384 px. Crop 1.0.
_XCIT = ("N12", "T12", "T24", "S12", "S24", "M24", "L24")
_XCIT_NAMES = {"N": "nano", "T": "tiny", "S": "small", "M": "medium", "L": "large"}


def _register_xcit() -> None:
    for patch in (16, 8):
        for shape in _XCIT:
            arch = f"xcit_{_XCIT_NAMES[shape[0]]}_{shape[1:]}_p{patch}"
            for tag, resolution in (("fb_in1k", 224), ("fb_dist_in1k", 224),
                                    ("fb_dist_in1k", 384)):
                repo = f"{arch}_{resolution}.{tag}"
                distilled = " with DeiT distillation" if tag == "fb_dist_in1k" else ""
                register(WeightsRecord(
                    "xcit", f"{shape}/{patch}", tag if resolution == 224 else f"{tag}-384",
                    f"{HF_TIMM}/{repo}/resolve/main/model.safetensors", "timm_safetensors",
                    nm.XCIT, resolution, 1000, crop=1.0,
                    description=f"XCiT release (El-Nouby et al. 2021), ImageNet-1k{distilled} "
                                f"(timm hub copy {repo})"))


# --- ConvMixer ----------------------------------------------------------------------------------
# The authors' releases (locuslab/convmixer: pickled .pth.tar files, which vit_zoo does not read)
# as timm's hub copies. (variant, timm model, numerics); all 224 px, ImageNet-1k, crop 0.96.
_CONVMIXER = [
    ("768/32", "convmixer_768_32", nm.CONVMIXER_RELU),
    ("1024/20", "convmixer_1024_20_ks9_p14", nm.CONVMIXER),
    ("1536/20", "convmixer_1536_20", nm.CONVMIXER),
]


def _register_convmixer() -> None:
    for variant, arch, numerics in _CONVMIXER:
        repo = f"{arch}.in1k"
        register(WeightsRecord(
            "convmixer", variant, "in1k", f"{HF_TIMM}/{repo}/resolve/main/model.safetensors",
            "timm_safetensors", numerics, 224, 1000, pooling="avg", license="MIT", crop=0.96,
            description=f"ConvMixer release (Trockman & Kolter 2022), ImageNet-1k "
                        f"(timm hub copy {repo})"))


# --- MViT v2 -------------------------------------------------------------------------------------
# The Meta releases (facebookresearch/mvit, pickled .pyth) as timm's hub safetensors copies:
# ImageNet-1k for T/S/B/L, ImageNet-21k (its winter 2021 release: 19,168 classes) for the
# class-token models. (variant, timm model, timm tag, classes, about)
_INW21K = "ImageNet-21k (winter 2021, 19,168 classes)"
_MVIT_V2 = [
    ("T", "mvitv2_tiny", "fb_in1k", 1000, "ImageNet-1k"),
    ("S", "mvitv2_small", "fb_in1k", 1000, "ImageNet-1k"),
    ("B", "mvitv2_base", "fb_in1k", 1000, "ImageNet-1k"),
    ("L", "mvitv2_large", "fb_in1k", 1000, "ImageNet-1k"),
    ("B_cls", "mvitv2_base_cls", "fb_inw21k", 19168, _INW21K),
    ("L_cls", "mvitv2_large_cls", "fb_inw21k", 19168, _INW21K),
    ("H_cls", "mvitv2_huge_cls", "fb_inw21k", 19168, _INW21K),
]


def _register_mvit_v2() -> None:
    for variant, arch, tag, classes, about in _MVIT_V2:
        repo = f"{arch}.{tag}"
        register(WeightsRecord(
            "mvit_v2", variant, tag, f"{HF_TIMM}/{repo}/resolve/main/model.safetensors",
            "timm_safetensors", nm.MVIT_V2, 224, classes,
            pooling="token" if variant.endswith("_cls") else "avg",
            description=f"MViT v2 (Li et al. 2022), {about} (timm hub copy {repo})"))


_register_vit()
_register_hybrid()
_register_mixer()
_register_swin()
_register_clip()
_register_pvt_v2()
_register_xcit()
_register_convmixer()
_register_swin_v2()
_register_mvit_v2()
