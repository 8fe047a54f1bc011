"""Looking inside vision transformers: attention rollout, attention maps, mean attention
distance, position-embedding similarity and patch-embedding filters (the ViT paper's figure 7).

    from vit_zoo import inspect
    images = np.stack([inspect.load_image(path, model) for path in paths])
    rollout = inspect.attention_rollout(model, images)          # (B, rows, columns)
    distance = inspect.mean_attention_distance(model, images)   # (blocks, heads), pixels
    inspect.figures.rollout_overlay(images[0], rollout[0], "rollout.png")

Works on ViT, DeiT, hybrid ViTs, the CLIP image tower (pass the CLIP model or its
`image_encoder`) and, for attention maps and patch filters, Swin. The math is NumPy over the
attention probabilities that `vit_zoo.with_intermediates` exposes, and every model-level
function has a pure-array twin (`*_from_attentions`, `similarity_from_embeddings`,
`principal_filters`) for attention you already have. Figures need matplotlib
(`pip install "vit_zoo[viz]"`), imported only when a figure is drawn.
"""

from vit_zoo.inspect import figures
from vit_zoo.inspect.collect import (
    Attention,
    TokenLayout,
    collect_attention,
    token_layout,
)
from vit_zoo.inspect.distance import (
    mean_attention_distance,
    mean_distance_from_attentions,
    patch_distances,
)
from vit_zoo.inspect.embeddings import (
    patch_embedding_filters,
    position_embedding_similarity,
    principal_filters,
    similarity_from_embeddings,
)
from vit_zoo.inspect.images import input_size, load_image, prepare_image
from vit_zoo.inspect.maps import (
    attention_maps,
    maps_from_attentions,
    swin_attention_maps,
    swin_block_maps,
    window_maps_to_grid,
)
from vit_zoo.inspect.overlay import overlay, upsample
from vit_zoo.inspect.report import Explanation, explain
from vit_zoo.inspect.rollout import (
    HEAD_FUSIONS,
    attention_rollout,
    rollout_from_attentions,
    rollout_matrix,
)

__all__ = [
    "HEAD_FUSIONS",
    "Attention",
    "Explanation",
    "TokenLayout",
    "attention_maps",
    "attention_rollout",
    "collect_attention",
    "explain",
    "figures",
    "input_size",
    "load_image",
    "maps_from_attentions",
    "mean_attention_distance",
    "mean_distance_from_attentions",
    "overlay",
    "patch_distances",
    "patch_embedding_filters",
    "position_embedding_similarity",
    "prepare_image",
    "principal_filters",
    "rollout_from_attentions",
    "rollout_matrix",
    "similarity_from_embeddings",
    "swin_attention_maps",
    "swin_block_maps",
    "token_layout",
    "upsample",
    "window_maps_to_grid",
]
