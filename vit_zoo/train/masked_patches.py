"""Masked-patch prediction: the self-supervised pretraining of the ViT paper (Dosovitskiy et al.
2021, section "Self-supervision"), a BERT-style objective for images.

Per image, `mask_ratio` of the patch embeddings are corrupted after the patch projection and
before the position embedding is added: of the corrupted ones, 80% are replaced by a learned
mask token, 10% by the embedding of a random other patch of the batch and 10% are left as they
are. A linear head on the encoder's output token at each corrupted position predicts the patch's
3-bit mean colour (the mean RGB of the patch in the [0, 255] input, each channel cut into 8
levels: 512 classes). The loss is the cross-entropy over the corrupted patches only.

    encoder = vit_zoo.ViT(arch, include_top=False, pooling="token", input_shape=(16, 16, 3))
    pretrainer = vit_zoo.train.MaskedPatchPrediction(encoder, mask_ratio=0.5)
    pretrainer.compile(keras.optimizers.AdamW(1e-3))
    pretrainer.fit(images, epochs=20)        # a dataset of images, or of (images, anything)
    encoder.save("encoder.keras")            # pretrainer.encoder: the same, trained, model
    # fine-tune: the same ViT with a head, every other weight from the pretrained encoder
    classifier = vit_zoo.ViT(arch, weights="encoder.keras", input_shape=(16, 16, 3), classes=10)

The targets are computed from the images inside the model, so no labels are needed. All the
arithmetic is keras.ops and keras.random, so the pretrainer runs on every backend and under
tf.distribute. There each replica corrupts its own share of the batch (random replacements
come from that share) and every replica draws from the same seed state: the i-th image of
each share gets the same corruption pattern at a given step (shuffled from epoch to epoch, an
image still meets a new pattern every time).
"""

from __future__ import annotations

import keras
from keras import ops

from vit_zoo.models.vit import encode_tokens

#: How a corrupted patch is corrupted (values of `draw_corruption(...)["how"]`).
MASKED, RANDOM, KEPT = 0, 1, 2


@keras.saving.register_keras_serializable(package="vit_zoo")
class MaskedPatchPrediction(keras.Model):
    """Pretrains a vit_zoo ViT encoder by predicting the mean colour of corrupted patches.

    Args:
        encoder: a vit_zoo ViT (any head and pooling: only its layers up to the final norm
            are used) with a fixed input size and include_preprocessing=True (inputs RGB in
            [0, 255], the range the colour targets are read from).
        mask_ratio: share of each image's patches that are corrupted (rounded to a whole
            number of patches, at least one).
        random_fraction: share of the corrupted patches replaced by a random other patch's
            embedding (from anywhere in the batch, never the patch itself).
        keep_fraction: share of the corrupted patches left unchanged (still predicted). The
            rest, 1 - random_fraction - keep_fraction, get the learned mask token.
        bits: bits per colour channel of the target (3: 512 classes).
        seed: seed of the corruption draws; they change at every step.

    `fit` takes images (B, H, W, 3), or (images, anything) whose second part is ignored.
    `compile` takes the optimizer (and optionally metrics on (targets, logits)); the loss is
    the model's own. Logged: "loss" and "masked_patch_accuracy" (on corrupted patches).
    `call` returns {"logits": (B, k, classes), "targets": (B, k), "positions": (B, k),
    "how": (B, k)} for the k corrupted patches of each image.
    """

    def __init__(self, encoder: keras.Model, mask_ratio: float = 0.5,
                 random_fraction: float = 0.1, keep_fraction: float = 0.1, bits: int = 3,
                 seed: int | None = None, **kwargs):
        kwargs.setdefault("name", "masked_patch_prediction")
        super().__init__(**kwargs)
        if not 0.0 < mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}.")
        if random_fraction < 0 or keep_fraction < 0 or random_fraction + keep_fraction > 1:
            raise ValueError("random_fraction and keep_fraction must be >= 0 and sum to at "
                             f"most 1, got {random_fraction} and {keep_fraction}.")
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be between 1 and 8, got {bits}.")
        names = {layer.name for layer in encoder.layers}
        if not {"patch_embed", "pos_embed", "norm"} <= names:
            raise ValueError(f"{encoder.name} is not a vit_zoo ViT (it needs the layers "
                             "patch_embed, pos_embed and norm).")
        if "preprocessing" not in names:
            raise ValueError("The colour targets are read from RGB inputs in [0, 255]: build "
                             "the encoder with include_preprocessing=True.")
        height, width = encoder.inputs[0].shape[1:3]
        grid = encoder.get_layer("patch_embed").output.shape[1:3]
        if None in (height, width) or None in grid:
            raise ValueError("MaskedPatchPrediction needs an encoder with a fixed input size; "
                             "build it with input_shape=(height, width, 3).")
        if height % grid[0] or width % grid[1]:
            raise ValueError(f"The {grid[0]}x{grid[1]} token grid does not tile the "
                             f"{height}x{width} input; choose a size divisible by the cell.")
        self.encoder = encoder
        self.mask_ratio, self.bits, self.seed = float(mask_ratio), int(bits), seed
        self.random_fraction, self.keep_fraction = float(random_fraction), float(keep_fraction)
        self.grid = tuple(grid)
        self.cell = (height // grid[0], width // grid[1])  # input pixels per token
        self.num_patches = grid[0] * grid[1]
        self.num_corrupted = max(1, int(round(mask_ratio * self.num_patches)))
        self.num_prefix_tokens = encoder.get_layer("pos_embed").num_prefix_tokens
        self.num_colors = 2 ** (3 * self.bits)
        hidden_dim = encoder.get_layer("patch_embed").output.shape[-1]

        self.mask_token = self.add_weight(
            name="mask_token", shape=(hidden_dim,),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        # float32 even under mixed precision, as the classification heads.
        self.color_head = keras.layers.Dense(self.num_colors, name="color_head", dtype="float32")
        self.color_head.build((None, hidden_dim))
        self.seed_generator = keras.random.SeedGenerator(seed)
        # A Loss object: under tf.distribute it divides by the number of replicas, so that the
        # summed replica gradients are those of the global batch.
        self.patch_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
            name="masked_patch_accuracy")
        self.built = True

    def compile(self, optimizer="adamw", loss=None, **kwargs):
        if loss is not None:
            raise ValueError("MaskedPatchPrediction brings its own loss (cross-entropy on the "
                             "corrupted patches); compile it without `loss`.")
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Recompile a loaded model as it was saved (its optimizer state is loaded next)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    def draw_corruption(self, batch_size):
        """A fresh corruption decision for a batch (the test hook as well as the training path):
        "positions" (B, k) the corrupted patches of each image (row-major grid indices, a
        uniformly random k-subset), "how" (B, k) MASKED, RANDOM or KEPT for each, "source" (B, k)
        the patch a RANDOM one is replaced by, as an index into the batch's B * N patches."""
        n, k = self.num_patches, self.num_corrupted
        scores = keras.random.uniform((batch_size, n), seed=self.seed_generator)
        _, positions = ops.top_k(scores, k)
        positions = ops.cast(positions, "int32")
        choice = keras.random.uniform((batch_size, k), seed=self.seed_generator)
        masked = 1.0 - self.random_fraction - self.keep_fraction
        how = ops.where(choice < masked, MASKED,
                        ops.where(choice < masked + self.random_fraction, RANDOM, KEPT))
        # Any patch of the batch but the one replaced: draw from the other B * N - 1 and step
        # over the patch itself.
        own = ops.arange(batch_size, dtype="int32")[:, None] * n + positions
        others = ops.maximum(batch_size * n - 1, 1)
        source = ops.cast(keras.random.uniform((batch_size, k), seed=self.seed_generator)
                          * ops.cast(others, "float32"), "int32")
        source = ops.minimum(source, others - 1)
        source = source + ops.cast(source >= own, "int32")
        return {"positions": positions, "how": ops.cast(how, "int32"), "source": source}

    def corrupt(self, patches, decision):
        """The patch grid (B, h, w, D) with the patches of `decision` corrupted."""
        hidden_dim = patches.shape[-1]
        flat = ops.reshape(patches, (-1, self.num_patches, hidden_dim))
        positions, how = decision["positions"], decision["how"][..., None]
        original = ops.take_along_axis(flat, positions[..., None], axis=1)
        random_other = ops.take(ops.reshape(patches, (-1, hidden_dim)), decision["source"],
                                axis=0)
        mask_token = ops.cast(self.mask_token, patches.dtype)
        replacement = ops.where(how == MASKED, mask_token,
                                ops.where(how == RANDOM, random_other, original))
        # Put the replacements in place: a one-hot matmul (exact, differentiable, any backend).
        placement = ops.one_hot(positions, self.num_patches, dtype=patches.dtype)  # (B, k, N)
        corrupted = ops.sum(placement, axis=1)[..., None]  # (B, N, 1): 1 where corrupted
        flat = flat * (1 - corrupted) + ops.einsum("bkn,bkd->bnd", placement, replacement)
        return ops.reshape(flat, ops.shape(patches))

    def color_targets(self, images):
        """Class of each patch's mean colour (B, N) int32: every channel's mean over the patch's
        input pixels, cut into 2**bits equal levels of [0, 256), as (r * L + g) * L + b."""
        cell_h, cell_w = self.cell
        rows, columns = self.grid
        pixels = ops.reshape(ops.cast(images, "float32"),
                             (-1, rows, cell_h, columns, cell_w, 3))
        means = ops.mean(pixels, axis=(2, 4))  # (B, rows, columns, 3)
        levels = 2**self.bits
        quantized = ops.clip(ops.floor(means * (levels / 256.0)), 0, levels - 1)
        quantized = ops.cast(quantized, "int32")
        classes = (quantized[..., 0] * levels + quantized[..., 1]) * levels + quantized[..., 2]
        return ops.reshape(classes, (-1, self.num_patches))

    def call(self, images, training=False):
        decision = self.draw_corruption(ops.shape(images)[0])
        tokens = encode_tokens(self.encoder, images,
                               patch_transform=lambda patches: self.corrupt(patches, decision))
        patch_tokens = tokens[:, self.num_prefix_tokens:]
        positions = decision["positions"]
        at_corrupted = ops.take_along_axis(patch_tokens, positions[..., None], axis=1)
        logits = self.color_head(at_corrupted)
        targets = ops.take_along_axis(self.color_targets(images), positions, axis=1)
        return {"logits": logits, "targets": targets, "positions": positions,
                "how": decision["how"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = self.patch_loss(y_pred["targets"], ops.cast(y_pred["logits"], "float32"))
        if self.losses:  # regularization losses of the encoder, scaled by Keras
            loss = loss + super().compute_loss(x, y, y_pred, sample_weight, training)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.accuracy_tracker.update_state(y_pred["targets"], y_pred["logits"])
        return super().compute_metrics(x, y_pred["targets"], y_pred["logits"])

    # Keras saves no SeedGenerator state with the weights; the corruption stream's position
    # travels with them here, so that a run resumed from a backup (vit_zoo.train.backup)
    # corrupts its next batches as the uninterrupted run would.
    _SEED_STATE = "corruption_seed_state"

    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[self._SEED_STATE] = self.seed_generator.state

    def load_own_variables(self, store):
        keys = list(store.keys())
        if self._SEED_STATE in keys:
            self.seed_generator.state.assign(store[self._SEED_STATE])
        super().load_own_variables({key: store[key] for key in keys if key != self._SEED_STATE})

    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "mask_ratio": self.mask_ratio, "random_fraction": self.random_fraction,
                "keep_fraction": self.keep_fraction, "bits": self.bits, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
