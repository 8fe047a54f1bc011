"""The README's model tables (vit_zoo.catalog) and the compute-cost counter (vit_zoo.complexity).

Three independent counts must agree: PyTorch's FLOP counter on timm's models (in its own
process), `complexity.macs` reading a built Keras model's graph, and the catalog's arithmetic
from the variant tables, which the README's tables are generated from.
"""

import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from keras import ops

import vit_zoo
from tests.helpers import REFERENCE_DIR
from vit_zoo import catalog, complexity
from vit_zoo.models import BUILDERS, clip, mixer, swin, vit
from vit_zoo.weights import records_for

README = Path(__file__).parent.parent / "README.md"
# Builders counted against timm's model of the same shape at the builder's default size: one
# per family that timm has, the hybrid with a full ResNet stem.
TIMM_MODELS = {
    "ViT_Ti16": "vit_tiny_patch16_224",
    "R26_ViT_S32": "vit_small_r26_s32_224",
    "Swin_T": "swin_tiny_patch4_window7_224",
    "Mixer_S32": "mixer_s32_224",
    "PVTv2_B0": "pvt_v2_b0",
    "XCiT_N12_P16": "xcit_nano_12_p16_224",
    "SwinV2_T": "swinv2_tiny_window8_256",
    "ConvMixer_1024_20": "convmixer_1024_20_ks9_p14",
    "MViTv2_T": "mvitv2_tiny",
}


# MACs vit_zoo's graph does not spend where timm's does, by construction. XCiT's position
# encoding projects [row features, column features] (2h -> D) at every one of the H x W patches
# in timm; vit_zoo projects the H row and W column features by their halves of the kernel and
# adds them (the same values): (H + W) h D MACs instead of H W 2h D. N12/16 at 224 px: a 14 x 14
# grid, h = 32, D = 128.
SAVED_MACS = {"XCiT_N12_P16": 14 * 14 * 64 * 128 - (14 + 14) * 32 * 128}


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """{builder: (vit_zoo's complexity.Cost, timm's {"macs", "params"})}. PyTorch counts in its
    own process while the Keras graphs are traced here."""
    out_dir = tmp_path_factory.mktemp("flop_counts")
    spec = out_dir / "cases.json"
    sizes = {builder: catalog.default_resolution(*BUILDERS[builder]) for builder in TIMM_MODELS}
    spec.write_text(json.dumps({b: {"timm": t, "size": [sizes[b], sizes[b]]}
                                for b, t in TIMM_MODELS.items()}))
    reference = subprocess.Popen(
        [sys.executable, str(REFERENCE_DIR / "flop_counts.py"), str(out_dir), str(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ours = {builder: complexity.cost(getattr(vit_zoo, builder)) for builder in TIMM_MODELS}
    output, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, output
    theirs = json.loads((out_dir / "flop_counts.json").read_text())
    return {builder: (ours[builder], theirs[builder]) for builder in TIMM_MODELS}


@pytest.mark.parametrize("builder", list(TIMM_MODELS))
def test_macs_equal_pytorch_flop_counter(builder, counted):
    ours, theirs = counted[builder]
    print(f"{builder}: vit_zoo {ours.macs:,} MACs, torch FlopCounterMode / 2 {theirs['macs']:,}")
    assert ours.macs == theirs["macs"] - SAVED_MACS.get(builder, 0)
    assert ours.params == theirs["params"]


def _formula(builder: str) -> complexity.Cost:
    family, variant = BUILDERS[builder]
    if family in ("vit", "hybrid"):
        return catalog.vit_cost(vit.decode_variant(variant), (224, 224))
    if family == "mixer":
        return catalog.mixer_cost(mixer.decode_variant(variant), (224, 224))
    return catalog.swin_cost(swin.decode_variant(variant), (224, 224), 7)


@pytest.mark.parametrize("builder", [builder for builder in TIMM_MODELS
                                     if BUILDERS[builder][0] in catalog.FORMULA_FAMILIES])
def test_catalog_arithmetic_equals_built_model(builder, counted):
    assert _formula(builder) == counted[builder][0]


@pytest.mark.parametrize("builder", [builder for builder in TIMM_MODELS
                                     if BUILDERS[builder][0] not in catalog.FORMULA_FAMILIES])
def test_measured_costs_are_the_built_models(builder, counted):
    """The derivative families' rows of vit_zoo/data/measured_costs.tsv are what
    `complexity.cost` reads off the built model today (and that equals PyTorch's counter on
    timm's model, test_macs_equal_pytorch_flop_counter)."""
    assert catalog.measured_costs()[(builder, "")] == counted[builder][0]


def test_measured_costs_file_has_every_row_the_tables_need():
    needed = {(builder, tag) for builder, tag, _, _ in catalog.measured_cases()}
    assert set(catalog.measured_costs()) == needed


def test_measured_rows_of_registered_files_are_the_built_models():
    """One registered file per derivative family, measured again at its own size and options
    (a row whose size or window differs from the builder's default where the registry has one)."""
    measured = catalog.measured_costs()
    checked = {}
    for builder, tag, resolution, options in catalog.measured_cases():
        family = BUILDERS[builder][0]
        if tag and family not in checked:
            checked[family] = (builder, tag, resolution, options)
    for builder, tag, resolution, options in checked.values():
        assert measured[(builder, tag)] == catalog.measure(builder, resolution, options), tag


TINY_VIT = vit.ViTArch("tiny", hidden_dim=64, depth=2, num_heads=2, mlp_dim=96, patch_size=16)
TINY_STEM_16 = vit.ViTArch("stem16", 64, 1, 2, 96, patch_size=1, stem_depths=(1, 1, 1))
TINY_ROOT = vit.ViTArch("root", 64, 1, 2, 96, patch_size=8, stem_depths=())
TINY_SWIN = swin.SwinArch("tiny", 16, (1, 2, 1, 1), (1, 2, 2, 4))
TINY_MIXER = mixer.MixerArch("tiny", 64, 2, 32, 96, 16)
TINY_CLIP = clip.CLIPArch("tiny", TINY_VIT, 64, embed_dim=32, text_width=64, text_heads=2,
                          text_depth=2)
# (what is built, the catalog's arithmetic): shapes the catalog's own rows do not reach, i.e.
# non-square inputs, "SAME" padding of odd sizes in the stem, Swin windows padded at every stage.
SHAPES = {
    "vit 96x160": (lambda: vit_zoo.ViT(TINY_VIT, input_shape=(96, 160, 3), classes=10),
                   lambda: catalog.vit_cost(TINY_VIT, (96, 160), 10)),
    "stem stride 16, 100 px": (lambda: vit_zoo.ViT(TINY_STEM_16, input_shape=(100, 100, 3)),
                               lambda: catalog.vit_cost(TINY_STEM_16, (100, 100))),
    "stem root only, 64 px": (lambda: vit_zoo.ViT(TINY_ROOT, input_shape=(64, 64, 3)),
                              lambda: catalog.vit_cost(TINY_ROOT, (64, 64))),
    "swin 200 px, window 7": (lambda: vit_zoo.Swin(TINY_SWIN, input_shape=(200, 200, 3)),
                              lambda: catalog.swin_cost(TINY_SWIN, (200, 200), 7)),
    "mixer 64x96": (lambda: vit_zoo.Mixer(TINY_MIXER, input_shape=(64, 96, 3)),
                    lambda: catalog.mixer_cost(TINY_MIXER, (64, 96))),
    "clip image tower": (lambda: vit_zoo.CLIPImageEncoder(TINY_CLIP),
                         lambda: catalog.clip_cost(TINY_CLIP)[0]),
}


@pytest.mark.parametrize("case", list(SHAPES))
def test_catalog_arithmetic_on_other_shapes(case):
    build, formula = SHAPES[case]
    assert complexity.cost(build) == formula()


class Doubling(keras.Model):
    """A subclassed model: no symbolic inputs."""

    def call(self, x):
        return x * 2


def test_clip_counts_and_inputs_of_a_subclassed_model():
    """A CLIPModel has no symbolic inputs: `inputs=` says what it is called with. One image and
    one text cost both towers plus the similarity (E MACs for one pair); the parameters are
    both towers' and the temperature's."""
    image, text = catalog.clip_cost(TINY_CLIP)
    whole = complexity.cost(
        lambda: vit_zoo.CLIP(TINY_CLIP),
        inputs={"images": keras.Input((64, 64, 3)),
                "token_ids": keras.Input((clip.CONTEXT_LENGTH,), dtype="int32")})
    assert whole == complexity.Cost(image.params + text.params,
                                    image.macs + text.macs + TINY_CLIP.embed_dim)
    with pytest.raises(ValueError, match="no symbolic inputs"):
        complexity.macs(Doubling())


class ThreeProducts(keras.layers.Layer):
    """x W by einsum (counted), x x^T (two data operands: counted), and a mean over the rows
    written as a product with a constant row (a reduction: not counted)."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 3), name="w")

    def call(self, x):
        projected = ops.einsum("bnc,cd->bnd", x, self.w)
        gram = ops.matmul(projected, ops.swapaxes(projected, 1, 2))
        average = ops.ones((1, 1, x.shape[1])) / x.shape[1]
        return ops.matmul(average, gram)


def test_macs_of_layers_by_hand():
    images = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 3, padding="same")(images)  # 64 px x 6 out x (3 x 3 x 4)
    x = keras.layers.Conv2D(6, 3, padding="same", groups=2)(x)  # 64 x 6 x (3 x 3 x 3)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 16 x 6 x 9
    x = keras.layers.Conv2DTranspose(5, 3, strides=2, padding="same")(x)  # 16 x 6 in x 9 x 5
    x = keras.layers.Dense(7)(x)  # 64 x 5 x 7
    x = ThreeProducts()(keras.layers.Reshape((64, 7))(x))  # 64 x 7 x 3, then 64 x 64 x 3
    model = keras.Model(images, x)
    expected = (64 * 6 * 36 + 64 * 6 * 27 + 16 * 6 * 9 + 16 * 6 * 45 + 64 * 5 * 7
                + 64 * 7 * 3 + 64 * 64 * 3)
    assert complexity.macs(model) == expected
    volumes = keras.Input((4, 4, 4, 2))
    y = keras.layers.Conv3D(3, 2)(volumes)  # 27 voxels x 3 out x (2 x 2 x 2 x 2)
    y = keras.layers.Conv3DTranspose(4, 2, strides=2)(y)  # 27 x 3 in x (2 x 2 x 2 x 4)
    assert complexity.macs(keras.Model(volumes, y)) == 27 * 3 * 16 + 27 * 3 * 32
    with pytest.raises(ValueError, match="fixed input_shape"):
        complexity.macs(keras.Sequential([keras.Input((None, None, 3)),
                                          keras.layers.Conv2D(2, 3)]))


def _table_rows(tables: str) -> dict[str, list[tuple[str, str]]]:
    """{family title: [(builder, weights cell)]} read back from the generated markdown."""
    rows: dict[str, list[tuple[str, str]]] = {}
    family, builder = None, None
    for line in tables.splitlines():
        if line.startswith("### "):
            family = line[4:]
            rows[family] = []
        elif family and line.startswith("| ") and not line.startswith("| builder"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            builder = cells[0].strip("`") or builder
            rows[family].append((builder, cells[2]))
    return rows


def test_every_builder_and_registered_tag_is_in_the_tables():
    rows = _table_rows(catalog.markdown_tables())
    expected: dict[str, list[tuple[str, str]]] = {title: [] for title in
                                                  catalog.FAMILY_TITLES.values()}
    for builder, (family, variant) in {**BUILDERS, **clip.BUILDERS}.items():
        tags = [f"`{record.tag}`" for record in records_for(family, variant)]
        expected[catalog.FAMILY_TITLES[family]] += [(builder, tag) for tag in tags] or [
            (builder, "(none registered)")]
    assert rows == expected


def test_published_figures_belong_to_registered_imagenet_classifiers():
    sources, figures = catalog.published_top1()
    for (family, variant, tag), figure in figures.items():
        record = next((r for r in records_for(family, variant) if r.tag == tag), None)
        assert record is not None, f"{family} {variant} {tag}: not a registered tag"
        assert record.classes == 1000 or family == "clip", f"{tag}: no ImageNet-1k head"
        assert 0 < float(figure.value) < 100, figure
    assert {figure.source for figure in figures.values()} == set(sources)


def test_readme_tables_are_the_generated_ones():
    """README.md's block between the markers is `python -m vit_zoo.catalog`'s output: rerun it
    and paste it in after changing a variant table, the registry or the published figures."""
    assert catalog.readme_block(README.read_text()) == catalog.markdown_tables()
