"""The model tables of the README: every builder, its size and compute cost, and its registered
weights with their published ImageNet top-1 and numerics.

    python -m vit_zoo.catalog          # prints the tables (markdown)

README.md carries a copy between `<!-- model-tables:start -->` and `<!-- model-tables:end -->`;
tests/test_catalog.py keeps it equal to `markdown_tables()`.

Parameters and multiply-accumulates of the founding families (ViT, hybrids, Mixer, Swin, CLIP)
are worked out here from the variant tables, by the arithmetic of each family's layers:
milliseconds, where building the ~30 models takes minutes. tests/test_catalog.py checks the
arithmetic against `Model.count_params()` and against `vit_zoo.complexity.macs` (the count read
off a built model's graph), and that count against PyTorch's FLOP counter on timm's models.
The derivative families (PVT v2, Swin V2, XCiT, ConvMixer, MViT v2) have no formulas here: their
counts are `complexity.cost` of each built model (weights never allocated), stored in
vit_zoo/data/measured_costs.tsv by `python -m vit_zoo.catalog --measure`; the tests re-measure
rows of it and check each family against PyTorch's FLOP counter. MACs count what
`complexity.macs` counts: matrix products and convolutions, one MAC counted once, as fvcore's
and timm's "FLOPs" columns do.

The published top-1 figures are data, with their sources: vit_zoo/data/published_top1.tsv.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vit_zoo import numerics as nm
from vit_zoo.complexity import Cost
from vit_zoo.models import BUILDERS, clip, mixer, swin, swin_v2, vit
from vit_zoo.weights import records_for
from vit_zoo.weights.registry import WeightsRecord

PUBLISHED_TOP1 = Path(__file__).parent / "data" / "published_top1.tsv"
MEASURED_COSTS = Path(__file__).parent / "data" / "measured_costs.tsv"
#: Families whose costs come from the formulas below; every other family's are measured.
FORMULA_FAMILIES = ("vit", "hybrid", "mixer", "swin", "clip")
#: Families whose only normalization is BatchNorm (its epsilon is the numerics' norm epsilon).
BATCH_NORM_FAMILIES = ("convmixer",)
START_MARKER = "<!-- model-tables:start -->"
END_MARKER = "<!-- model-tables:end -->"
#: ImageNet-1k: the head size the parameter counts and MACs are given for.
CLASSES = 1000
FAMILY_TITLES = {
    "vit": "ViT",
    "hybrid": "Hybrid ResNet + ViT",
    "mixer": "MLP-Mixer",
    "swin": "Swin",
    "clip": "CLIP",
    "pvt_v2": "PVT v2",
    "xcit": "XCiT",
    "swin_v2": "Swin V2",
    "convmixer": "ConvMixer",
    "mvit_v2": "MViT v2",
}


# --- Parameters and MACs from the variant tables -----------------------------------------------

def _dense(inputs: int, outputs: int, bias: bool = True) -> int:
    return inputs * outputs + (outputs if bias else 0)


def _layer_norm(width: int) -> int:
    return 2 * width


def _halve(size: tuple[int, int]) -> tuple[int, int]:
    """A stride-2 step with "SAME" padding (or padding of odd sides): ceil(size / 2)."""
    return (-(-size[0] // 2), -(-size[1] // 2))


def _transformer_block(width: int, mlp_dim: int, tokens: int) -> Cost:
    """Pre-norm block: LN, fused QKV, attention (Q K^T and attention x V), output projection,
    LN, two-layer MLP."""
    params = (2 * _layer_norm(width) + _dense(width, 3 * width) + _dense(width, width)
              + _dense(width, mlp_dim) + _dense(mlp_dim, width))
    macs = tokens * (3 * width * width + width * width + 2 * width * mlp_dim)
    macs += 2 * tokens * tokens * width  # summed over heads: heads x tokens^2 x head_dim, twice
    return Cost(params, macs)


def resnet_stem_cost(stage_depths: tuple[int, ...], size: tuple[int, int]):
    """(Cost, output channels, output size) of the hybrids' ResNet stem (vit_zoo.layers.resnet):
    weight-standardized bias-free convolutions, a GroupNorm (scale, offset) after each."""
    width = 64
    size = _halve(size)  # 7x7 stride-2 root convolution
    params, macs = 7 * 7 * 3 * width + 2 * width, size[0] * size[1] * 7 * 7 * 3 * width
    size, channels = _halve(size), width  # 3x3 stride-2 max pool
    for stage, depth in enumerate(stage_depths):
        filters = width * 2**stage
        for unit in range(depth):
            strides = 2 if stage > 0 and unit == 0 else 1
            out_size = _halve(size) if strides == 2 else size
            pixels, out_pixels = size[0] * size[1], out_size[0] * out_size[1]
            params += (channels * filters + 9 * filters * filters + filters * 4 * filters
                       + 2 * (filters + filters + 4 * filters))
            macs += (pixels * channels * filters + out_pixels * 9 * filters * filters
                     + out_pixels * filters * 4 * filters)
            if channels != 4 * filters or strides != 1:  # projection shortcut
                params += channels * 4 * filters + 2 * 4 * filters
                macs += out_pixels * channels * 4 * filters
            size, channels = out_size, 4 * filters
    return Cost(params, macs), channels, size


def vit_cost(arch: vit.ViTArch, size: tuple[int, int], classes: int = CLASSES, *,
             patch_bias: bool = True, pre_norm: bool = False) -> Cost:
    """A ViT (plain or hybrid) with a class token, at `size` (height, width); `classes=0`: no
    head. `patch_bias` and `pre_norm` as the ViT builder's (CLIP's image tower: False, True)."""
    params = macs = 0
    channels, grid_size = 3, size
    if arch.stem_depths is not None:
        stem, channels, grid_size = resnet_stem_cost(arch.stem_depths, size)
        params, macs = stem.params, stem.macs
    width, patch = arch.hidden_dim, arch.patch_size
    patches = (grid_size[0] // patch) * (grid_size[1] // patch)
    tokens = patches + 1
    params += _dense(patch * patch * channels, width, patch_bias)
    macs += patches * patch * patch * channels * width
    params += width + tokens * width  # class token, position embeddings
    if pre_norm:
        params += _layer_norm(width)
    block = _transformer_block(width, arch.mlp_dim, tokens)
    params += arch.depth * block.params + _layer_norm(width)
    macs += arch.depth * block.macs
    if classes:
        params, macs = params + _dense(width, classes), macs + width * classes
    return Cost(params, macs)


def mixer_cost(arch: mixer.MixerArch, size: tuple[int, int], classes: int = CLASSES) -> Cost:
    """MLP-Mixer at `size`: token-mixing MLPs over the patches, channel-mixing MLPs per patch."""
    width, patch = arch.hidden_dim, arch.patch_size
    patches = (size[0] // patch) * (size[1] // patch)
    block_params = (2 * _layer_norm(width)
                    + _dense(patches, arch.tokens_mlp_dim) + _dense(arch.tokens_mlp_dim, patches)
                    + _dense(width, arch.channels_mlp_dim) + _dense(arch.channels_mlp_dim, width))
    block_macs = 2 * width * patches * arch.tokens_mlp_dim
    block_macs += 2 * patches * width * arch.channels_mlp_dim
    params = _dense(patch * patch * 3, width) + arch.depth * block_params + _layer_norm(width)
    macs = patches * patch * patch * 3 * width + arch.depth * block_macs
    return Cost(params + _dense(width, classes), macs + width * classes)


def swin_cost(arch: swin.SwinArch, size: tuple[int, int], window_size: int = 7,
              classes: int = CLASSES) -> Cost:
    """Swin at `size`: patch embedding, then per stage (patch merging,) blocks of window
    attention on the map padded to whole windows (one window where the map is not larger)."""
    width, patch = arch.embed_dim, swin.PATCH_SIZE
    grid = (size[0] // patch, size[1] // patch)
    params = _dense(patch * patch * 3, width) + _layer_norm(width)
    macs = grid[0] * grid[1] * patch * patch * 3 * width
    for stage, (depth, heads) in enumerate(zip(arch.depths, arch.num_heads)):
        if stage > 0:  # 2x2 neighbourhoods concatenated, LayerNorm, bias-free 4C -> 2C
            grid = _halve(grid)
            params += _layer_norm(4 * width) + _dense(4 * width, 2 * width, bias=False)
            macs += grid[0] * grid[1] * 4 * width * 2 * width
            width *= 2
        window = [min(side, window_size) for side in grid]
        padded = [-(-side // w) * w for side, w in zip(grid, window)]
        tokens, padded_tokens = grid[0] * grid[1], padded[0] * padded[1]
        block_params = (2 * _layer_norm(width) + (2 * window_size - 1) ** 2 * heads
                        + _dense(width, 3 * width) + _dense(width, width)
                        + _dense(width, 4 * width) + _dense(4 * width, width))
        # Attention runs on the padded map: QKV and projection per padded token, Q K^T and
        # attention x V inside each window; the MLP on the map itself.
        block_macs = (padded_tokens * 4 * width * width
                      + 2 * padded_tokens * window[0] * window[1] * width
                      + tokens * 8 * width * width)
        params, macs = params + depth * block_params, macs + depth * block_macs
    params += _layer_norm(width) + _dense(width, classes)
    return Cost(params, macs + width * classes)


def clip_cost(arch: clip.CLIPArch, resolution: int | None = None,
              context_length: int = clip.CONTEXT_LENGTH) -> tuple[Cost, Cost]:
    """(image tower, text tower) of a CLIP model: MACs per image and per text; the
    temperature (one parameter) is counted with the text tower."""
    side = resolution or arch.resolution
    image_arch = vit.decode_variant(arch.image_variant)
    tower = vit_cost(image_arch, (side, side), classes=0, patch_bias=False, pre_norm=True)
    projection = image_arch.hidden_dim * arch.embed_dim
    image = Cost(tower.params + projection, tower.macs + projection)
    width = arch.text_width
    block = _transformer_block(width, 4 * width, context_length)
    params = (arch.vocab_size + context_length) * width + arch.text_depth * block.params
    params += _layer_norm(width) + width * arch.embed_dim + 1
    # The end-of-text pooling picks its token with a one-hot product (context x width MACs).
    macs = arch.text_depth * block.macs + context_length * width + width * arch.embed_dim
    return image, Cost(params, macs)


# --- Published figures ------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    key: str
    url: str
    description: str


@dataclass(frozen=True)
class Top1:
    value: str  # as published, in percent
    source: str  # a Source key
    entry: str  # the source's own name for the entry


def published_top1(path: Path = PUBLISHED_TOP1) -> tuple[dict[str, Source],
                                                         dict[tuple[str, str, str], Top1]]:
    """The sources and the figures of vit_zoo/data/published_top1.tsv: ({key: Source},
    {(family, variant, tag): Top1})."""
    sources: dict[str, Source] = {}
    figures: dict[tuple[str, str, str], Top1] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        kind, *fields = line.split("\t")
        if kind == "source" and len(fields) == 3:
            sources[fields[0]] = Source(*fields)
        elif kind == "top1" and len(fields) == 6:
            family, variant, tag, value, source, entry = fields
            float(value)  # a number, or the line is wrong
            figures[(family, variant, tag)] = Top1(value, source, entry)
        else:
            raise ValueError(f"{path}:{number}: not a 'source' (3 fields) or 'top1' (6 fields) "
                             f"row: {line!r}")
    unknown = {figure.source for figure in figures.values()} - set(sources)
    if unknown:
        raise ValueError(f"{path}: figures cite unknown sources {sorted(unknown)}.")
    return sources, figures


# --- Tables --------------------------------------------------------------------------------------

_ACTIVATIONS = {"gelu_tanh": "tanh-GELU", "gelu": "GELU", "quick_gelu": "quick-GELU",
                "relu": "ReLU"}
_NORMALIZATIONS = {"inception": "x / 127.5 - 1", "imagenet": "ImageNet mean/std",
                   "clip": "CLIP mean/std"}


def _exponent(value: float) -> str:
    """1e-06 -> '1e-6'."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def numerics_text(numerics: nm.Numerics, family: str) -> str:
    """'tanh-GELU, LN eps 1e-6, x / 127.5 - 1' (hybrids add their stem's GroupNorm epsilon and
    weight standardization)."""
    normalization = next(
        (_NORMALIZATIONS.get(mode, mode) for mode, (mean, std) in nm.MODES.items()
         if (mean, std) == (numerics.mean, numerics.std)),
        f"mean {numerics.mean}, std {numerics.std}",
    )
    norm = "BN" if family in BATCH_NORM_FAMILIES else "LN"
    text = (f"{_ACTIVATIONS.get(numerics.activation, numerics.activation)}, "
            f"{norm} eps {_exponent(numerics.layer_norm_epsilon)}, {normalization}")
    if family == "hybrid":
        eps = _exponent(numerics.weight_standardization_epsilon)
        standardized = (f"(w - mean) / (std + {eps})" if numerics.weight_standardization == "std"
                        else f"(w - mean) / sqrt(var + {eps})")
        text += f"; GN eps {_exponent(numerics.group_norm_epsilon)}, conv {standardized}"
    return text


def _swin_window(record: WeightsRecord) -> int:
    """The window a Swin release was trained with: its file is named ..._window<N>_<size>."""
    match = re.search(r"window(\d+)", record.url)
    if not match:
        raise ValueError(f"No window size in the URL of Swin weights {record.tag!r}: "
                         f"{record.url}")
    return int(match.group(1))


def _record_options(family: str, record: WeightsRecord | None) -> dict:
    """Builder arguments a registered file implies beyond its resolution (Swin V2's window)."""
    if family == "swin_v2" and record:
        return {"window_size": swin_v2.record_windows(record)[0]}
    return {}


def measured_cases() -> list[tuple[str, str, int, dict]]:
    """(builder, tag or "", resolution, builder options) of every measured row the tables
    need: each builder of a measured family at its default size, and at each registered
    file's size and options."""
    cases = []
    for builder, (family, variant) in BUILDERS.items():
        if family in FORMULA_FAMILIES:
            continue
        cases.append((builder, "", default_resolution(family, variant), {}))
        cases += [(builder, record.tag, record.resolution, _record_options(family, record))
                  for record in records_for(family, variant)]
    return cases


def measure(builder: str, resolution: int, options: dict) -> Cost:
    """`complexity.cost` of `builder` at `resolution` with an ImageNet-1k head."""
    import vit_zoo
    from vit_zoo import complexity

    build = getattr(vit_zoo, builder)
    return complexity.cost(lambda: build(input_shape=(resolution, resolution, 3),
                                         classes=CLASSES, **options))


def measured_costs(path: Path = MEASURED_COSTS) -> dict[tuple[str, str], Cost]:
    """{(builder, tag or ""): Cost} from vit_zoo/data/measured_costs.tsv."""
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            builder, tag, _, params, macs = line.split("\t")
            rows[(builder, tag)] = Cost(int(params), int(macs))
    return rows


def write_measured_costs(path: Path = MEASURED_COSTS) -> None:
    """Measure every row `measured_cases()` lists and write the file."""
    lines = ["# builder\ttag\tresolution\tparams\tmacs: complexity.cost of the built model "
             "(ImageNet-1k head); written by `python -m vit_zoo.catalog --measure`"]
    for builder, tag, resolution, options in measured_cases():
        cost = measure(builder, resolution, options)
        lines.append(f"{builder}\t{tag}\t{resolution}\t{cost.params}\t{cost.macs}")
    path.write_text("\n".join(lines) + "\n")


def _costs(family: str, variant: str, resolution: int, record: WeightsRecord | None,
           builder: str = "", measured: dict | None = None):
    """(Cost, GMACs cell) of a builder at `resolution` with its ImageNet-1k head."""
    size = (resolution, resolution)
    if family not in FORMULA_FAMILIES:
        key = (builder, record.tag if record else "")
        if measured is None or key not in measured:
            raise ValueError(f"No measured cost for {builder} {key[1] or '(no weights)'} in "
                             f"{MEASURED_COSTS}: run `python -m vit_zoo.catalog --measure`.")
        cost = measured[key]
    elif family in ("vit", "hybrid"):
        cost = vit_cost(vit.decode_variant(variant), size)
    elif family == "mixer":
        cost = mixer_cost(mixer.decode_variant(variant), size)
    elif family == "swin":
        window = _swin_window(record) if record else 7
        cost = swin_cost(swin.decode_variant(variant), size, window)
    elif family == "clip":
        image, text = clip_cost(clip.decode_variant(variant), resolution)
        return Cost(image.params + text.params, image.macs), (
            f"{image.macs / 1e9:.2f} / {text.macs / 1e9:.2f}")
    else:
        raise ValueError(f"No cost formulas for family {family!r}.")
    return cost, f"{cost.macs / 1e9:.2f}"


def default_resolution(family: str, variant: str) -> int:
    """The input size a builder makes with weights=None."""
    if family == "clip":
        return clip.decode_variant(variant).resolution
    return swin_v2.DEFAULT_SIZE if family == "swin_v2" else 224


def _family_builders() -> dict[str, list[tuple[str, str]]]:
    grouped: dict[str, list[tuple[str, str]]] = {family: [] for family in FAMILY_TITLES}
    for builder, (family, variant) in {**BUILDERS, **clip.BUILDERS}.items():
        grouped[family].append((builder, variant))
    return grouped


def _family_table(family: str, builders, figures, measured) -> list[str]:
    top1 = "ImageNet zero-shot top-1 %" if family == "clip" else "ImageNet top-1 %"
    gmacs = "GMACs image / text" if family == "clip" else "GMACs"
    lines = [
        f"### {FAMILY_TITLES[family]}",
        "",
        f"| builder | params | weights | px | {gmacs} | {top1} | source | numerics |",
        "|---|--:|---|--:|--:|--:|---|---|",
    ]
    for builder, variant in builders:
        default = default_resolution(family, variant)
        params = _costs(family, variant, default, None, builder, measured)[0].params
        first = f"`{builder}` | {params / 1e6:.2f}M"
        records = records_for(family, variant)
        if not records:
            _, cell = _costs(family, variant, default, None, builder, measured)
            lines.append(f"| {first} | (none registered) | {default} | {cell} | | | |")
        for index, record in enumerate(records):
            _, cell = _costs(family, variant, record.resolution, record, builder, measured)
            figure = figures.get((family, variant, record.tag))
            if figure:
                accuracy, source = figure.value, f"[{figure.source}]"
            elif record.classes != CLASSES and family != "clip":
                accuracy, source = "n/a", ""
            else:
                accuracy, source = "–", ""
            lines.append(
                f"| {first if index == 0 else ' | '} | `{record.tag}` | {record.resolution} | "
                f"{cell} | {accuracy} | {source} | {numerics_text(record.numerics, family)} |"
            )
    return lines


_INTRO = """\
Per builder: parameters with `weights=None` (ImageNet-1k head, default input size). Per
registered weights tag: its input size; GMACs, the multiply-accumulates of one image at that
size with an ImageNet-1k head (one MAC counted once, as in fvcore's and timm's "FLOPs"; CLIP:
image tower per image / text tower per 77-token text); the published ImageNet-1k top-1 and its
source (listed below); the numerics the weights run with. "n/a": no ImageNet-1k head
(ImageNet-21k pre-training); "–": no published figure found for that file. The counts are
worked out from the variant tables by `vit_zoo.catalog` (for the derivative families: read off
each built model's graph by `vit_zoo.complexity.cost`) and checked against built models, against
`vit_zoo.complexity.macs(model)` (which counts any model's graph) and against PyTorch's FLOP
counter on timm's models (`tests/test_catalog.py`). Parameters leave out BatchNorm's moving
statistics, as PyTorch does. DeiT is
`vit_zoo.ViT(..., distillation_token=True)`; no DeiT weights are registered."""


def markdown_tables() -> str:
    """The README's model tables, one per family, and the list of the top-1 sources."""
    sources, figures = published_top1()
    lines = [_INTRO]
    measured = measured_costs()
    for family, builders in _family_builders().items():
        lines += ["", *_family_table(family, builders, figures, measured)]
    cited = sorted({figure.source for figure in figures.values()})
    lines += ["", "Sources of the top-1 figures (the entry behind each figure:",
              "`vit_zoo/data/published_top1.tsv`):", ""]
    lines += [f"- `[{key}]` {sources[key].description}. <{sources[key].url}>" for key in cited]
    return "\n".join(lines) + "\n"


def readme_block(readme: str) -> str:
    """The text between the model-table markers of a README."""
    start, end = readme.find(START_MARKER), readme.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"No {START_MARKER} ... {END_MARKER} block in the README.")
    return readme[start + len(START_MARKER):end].strip("\n") + "\n"


def main() -> None:
    import sys

    if sys.argv[1:] == ["--measure"]:
        write_measured_costs()
        print(f"wrote {MEASURED_COSTS}")
        return
    print(markdown_tables(), end="")


if __name__ == "__main__":
    main()
