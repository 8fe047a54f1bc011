"""Keras layers of the vit_zoo models: keras.ops only, every one serializable."""

from vit_zoo.layers.attention import MultiHeadSelfAttention, causal_mask
from vit_zoo.layers.contrastive import ClipValue, ContrastiveLogits
from vit_zoo.layers.convmixer import ActivationBatchNorm, ConvMixerBlock
from vit_zoo.layers.embedding import ClassToken, PatchEmbedding, PositionEmbedding
from vit_zoo.layers.encoder import EncoderBlock
from vit_zoo.layers.head import ClassifierHead
from vit_zoo.layers.mixer import MixerBlock
from vit_zoo.layers.mlp import Mlp
from vit_zoo.layers.mvit_v2 import MultiScaleBlock, PoolingAttention, TokenMap
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.layers.pooling import POOLINGS, MultiHeadAttentionPooling, TokenPooling
from vit_zoo.layers.pvt_v2 import (
    DepthwiseConvMlp,
    OverlapPatchEmbedding,
    PVTv2Block,
    SpatialReductionAttention,
)
from vit_zoo.layers.regularization import DropPath, LayerScale
from vit_zoo.layers.resample import INTERPOLATIONS, resample_grid, resample_matrix
from vit_zoo.layers.resnet import GroupNorm, ResidualUnit, ResNetStem, StdConv2D
from vit_zoo.layers.swin import PatchMerging, SwinBlock, WindowAttention
from vit_zoo.layers.swin_v2 import CosineWindowAttention, PatchMergingV2, SwinV2Block
from vit_zoo.layers.text import EndOfTextPooling, TextEmbedding
from vit_zoo.layers.xcit import (
    ClassAttention,
    ClassAttentionBlock,
    ConvPatchEmbedding,
    CrossCovarianceAttention,
    FourierPositionEncoding,
    LocalPatchInteraction,
    XCABlock,
)

__all__ = [
    "CosineWindowAttention",
    "MultiScaleBlock",
    "PatchMergingV2",
    "PoolingAttention",
    "SwinV2Block",
    "TokenMap",
    "ClassAttention",
    "ClassAttentionBlock",
    "ConvPatchEmbedding",
    "CrossCovarianceAttention",
    "FourierPositionEncoding",
    "LocalPatchInteraction",
    "XCABlock",
    "ActivationBatchNorm",
    "ConvMixerBlock",
    "DepthwiseConvMlp",
    "OverlapPatchEmbedding",
    "PVTv2Block",
    "SpatialReductionAttention",
    "ClipValue",
    "ContrastiveLogits",
    "EndOfTextPooling",
    "TextEmbedding",
    "causal_mask",
    "ClassToken",
    "ClassifierHead",
    "DropPath",
    "EncoderBlock",
    "GroupNorm",
    "INTERPOLATIONS",
    "LayerNormalization",
    "LayerScale",
    "MixerBlock",
    "Mlp",
    "MultiHeadAttentionPooling",
    "MultiHeadSelfAttention",
    "POOLINGS",
    "PatchEmbedding",
    "PatchMerging",
    "PositionEmbedding",
    "ResNetStem",
    "ResidualUnit",
    "StdConv2D",
    "SwinBlock",
    "WindowAttention",
    "TokenPooling",
    "resample_grid",
    "resample_matrix",
]
