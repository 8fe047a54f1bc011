"""CLIP tokenizer throughput (strings/s): vit_zoo against open_clip and keras-hub, one run.

Corpus: a few thousand COCO-like captions built here from word lists and templates (seeded),
with punctuation, numbers, possessives, capitals and a few non-ASCII words. Every contender
turns the whole corpus into int32 ids [N, 77] with <start_of_text> ... <end_of_text> and zero
padding, from the same OpenAI BPE vocabulary:

- vit_zoo eager: `vit_zoo.CLIPTokenizer()(list_of_str)` (Python, NumPy out).
- vit_zoo in-graph: `tokenizer.graph` mapped over batches in tf.data (core TF ops).
- open_clip: `open_clip.tokenizer.SimpleTokenizer()(list_of_str)` (Python, torch out).
- keras-hub: `keras_hub.models.CLIPPreprocessor` (its CLIPTokenizer plus a StartEndPacker, the
  way keras-hub produces [N, 77] ids) over a CLIPTokenizer built from vit_zoo's vocabulary.
  Called on a Python list it runs Hugging Face `tokenizers` (Rust) and then packs in Python;
  inside tf.data it runs its TensorFlow graph (tensorflow-text splitting, a BPE cache that is
  warm in steady state). Its bare tokenizer on the list (ragged ids: no start/end tokens, no
  padding, so less work than the rest) is timed too, for reference.

Eager paths are timed with the shared interleaved rounds (each call tokenizes the whole
corpus). The tf.data paths are timed in steady state: one iterator each over a repeated
dataset (a tf.data iterator instantiates its function graph once, seconds for these
tokenizers), warm-up batches, then rounds that alternate between vit_zoo's and keras-hub's
iterators. Ratios are medians of per-round ratios with quartiles. Also printed: how many rows
of ids differ between the tokenizers on this corpus.

    /work/venv/bin/python benchmarks/clip_tokenizer.py [--captions 4000] [--batch 256]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import time
from collections.abc import Callable, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# PyTorch (via open_clip) first: importing it after TensorFlow segfaults with these wheels.
import open_clip  # noqa: E402, I001

import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import vit_zoo  # noqa: E402
from timing import interleaved, speed_ratio  # noqa: E402
from vit_zoo.text.vocabulary import load_vocabulary  # noqa: E402

SUBJECTS = [
    "man", "woman", "boy", "girl", "child", "dog", "cat", "horse", "cow", "sheep", "giraffe",
    "elephant", "zebra", "bear", "bird", "person", "skateboarder", "surfer", "chef", "player",
    "couple", "group of people", "young man", "old woman", "little girl", "teddy bear",
]
ADJECTIVES = [
    "large", "small", "red", "white", "black", "brown", "wooden", "old", "tall", "young",
    "empty", "crowded", "colorful", "snowy", "grassy", "busy", "clean", "dirty", "shiny",
]
OBJECTS = [
    "pizza", "sandwich", "frisbee", "kite", "surfboard", "skateboard", "umbrella", "laptop",
    "bicycle", "motorcycle", "train", "bus", "truck", "boat", "tennis racket", "cake",
    "banana", "donut", "vase", "clock", "suitcase", "traffic light", "fire hydrant", "bench",
]
VERBS = [
    "riding", "holding", "eating", "carrying", "looking at", "standing next to", "sitting on",
    "walking past", "playing with", "throwing", "flying", "parked near",
]
PLACES = [
    "a city street", "the beach", "a kitchen", "a living room", "a grassy field", "the snow",
    "a train station", "an airport", "a park", "the ocean", "a dirt road", "a parking lot",
    "a zoo enclosure", "a tennis court", "a baseball field", "a restaurant",
]
# NFC-composed, as typed: ftfy leaves them unchanged, so the in-graph path must agree too.
FOREIGN = [
    "café", "Zürich", "naïve", "jalapeño", "crème brûlée", "São Paulo", "Ålesund", "Éclair",
    "piñata", "smörgåsbord", "façade", "Köln", "résumé", "Straße",
]
NUMBERS = ["two", "three", "four", "several", "2", "3", "5", "12", "1990s", "2019", "3.5", "100"]
TEMPLATES = [
    "A {adj} {subj} {verb} a {obj} in {place}.",
    "{Num} {subj}s {verb} a {adj} {obj}.",
    "The {subj} is {verb} the {obj}, in {place}.",
    "A {subj} {verb} a {obj} near a {foreign} sign",
    "{Subj}'s {obj} on a {adj} table at a {foreign} ({num} people waiting).",
    "Close-up of a {adj} {obj} with {num} {obj2}s",
    "a {subj} {verb} {place} - {num} {adj} {obj2}s nearby!",
    "Photo of a {adj} {obj} taken in {foreign}, {num} years ago",
    "There is a {subj} that's {verb} a {obj} and a {obj2}; it's {adj}.",
    "Two {subj}s & a {obj} on {place}... what a day :)",
]


def captions(count: int, seed: int = 0) -> list[str]:
    """COCO-like captions from the templates above, seeded."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        subj = rng.choice(SUBJECTS)
        num = rng.choice(NUMBERS)
        out.append(rng.choice(TEMPLATES).format(
            adj=rng.choice(ADJECTIVES), subj=subj, Subj=subj.capitalize(), verb=rng.choice(VERBS),
            obj=rng.choice(OBJECTS), obj2=rng.choice(OBJECTS), place=rng.choice(PLACES),
            foreign=rng.choice(FOREIGN), num=num, Num=num.capitalize(),
        ))
    return out


def keras_hub_preprocessor() -> keras_hub.models.CLIPPreprocessor:
    """keras-hub's CLIPPreprocessor over a CLIPTokenizer with vit_zoo's vocabulary and merges.

    keras-hub names the special tokens <|startoftext|> / <|endoftext|>; ids are unchanged.
    """
    vocabulary = load_vocabulary()
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    ids = {renamed.get(token, token): i for i, token in enumerate(vocabulary.tokens)}
    merges = [f"{a} {b}" for a, b in vocabulary.merges]
    tokenizer = keras_hub.models.CLIPTokenizer(vocabulary=ids, merges=merges)
    return keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=77)


def tf_data_iterator(texts: list[str], batch: int, function: Callable,
                     repeat: bool = True) -> Iterator:
    """Batches of texts mapped through `function` in parallel, as a training input would be."""
    dataset = tf.data.Dataset.from_tensor_slices(texts)
    if repeat:  # repeat before batching: every batch is full
        dataset = dataset.repeat()
    dataset = dataset.batch(batch).map(function, num_parallel_calls=tf.data.AUTOTUNE)
    return iter(dataset)


def all_ids(texts: list[str], batch: int, function: Callable) -> np.ndarray:
    """The ids of the whole corpus through a one-pass tf.data pipeline."""
    return np.concatenate([b.numpy() for b in tf_data_iterator(texts, batch, function, False)])


def time_pipelines(iterators: dict[str, Iterator], rounds: int, batches: int,
                   warmup: int = 8, drain: int = 4) -> dict[str, list[float]]:
    """Seconds per batch of each pipeline, rounds alternating between them.

    While one pipeline is timed, the other's parallel map keeps filling its small buffer; the
    `drain` untimed batches at the start of each round empty that buffer, so the timed batches
    are computed while being timed.
    """
    for iterator in iterators.values():
        for _ in range(warmup):
            next(iterator)
    times = {key: [] for key in iterators}
    for _ in range(rounds):
        for key, iterator in iterators.items():
            for _ in range(drain):
                next(iterator)
            start = time.perf_counter()
            for _ in range(batches):
                next(iterator)
            times[key].append((time.perf_counter() - start) / batches)
    return times


def differing_rows(a: np.ndarray, b: np.ndarray) -> int:
    """How many rows of ids differ anywhere."""
    return int(np.sum(np.any(np.asarray(a) != np.asarray(b), axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=256, help="tf.data batch size")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--batches", type=int, default=20, help="timed tf.data batches a round")
    args = parser.parse_args()

    texts = captions(args.captions)
    ours = vit_zoo.CLIPTokenizer()
    theirs = open_clip.tokenizer.SimpleTokenizer()
    hub = keras_hub_preprocessor()

    def keras_hub_eager() -> np.ndarray:
        return np.asarray(hub({"prompts": texts, "images": None})["token_ids"])

    def keras_hub_graph(batch: tf.Tensor) -> tf.Tensor:
        return hub({"prompts": batch, "images": None})["token_ids"]

    # Agreement first (also warms every cache the timed calls will use).
    reference = ours(texts)
    ours_graph = all_ids(texts, args.batch, ours.graph)
    open_clip_ids = theirs(texts).numpy()
    keras_hub_eager_ids = keras_hub_eager()
    keras_hub_graph_ids = all_ids(texts, args.batch, keras_hub_graph)

    eager = interleaved({
        "vit_zoo": lambda: ours(texts),
        "open_clip": lambda: theirs(texts),
        "keras_hub": keras_hub_eager,
        "keras_hub_tokenizer": lambda: hub.tokenizer(texts),
    }, args.rounds)
    graph = time_pipelines({
        "vit_zoo": tf_data_iterator(texts, args.batch, ours.graph),
        "keras_hub": tf_data_iterator(texts, args.batch, keras_hub_graph),
    }, args.rounds, args.batches)

    words = len(set(" ".join(texts).lower().split()))
    print(f"CLIP tokenizer, {len(texts)} captions (mean {np.mean([len(t) for t in texts]):.0f} "
          f"chars, {words} distinct words), ids int32 [N, 77]; {args.rounds} rounds, medians")
    rows = [
        ("eager, whole corpus a call", "vit_zoo", eager["vit_zoo"], len(texts), ""),
        ("", "open_clip", eager["open_clip"], len(texts), ""),
        ("", "keras_hub", eager["keras_hub"], len(texts),
         "CLIPPreprocessor on a list: HF tokenizers + packer"),
        ("", "keras_hub", eager["keras_hub_tokenizer"], len(texts),
         "bare CLIPTokenizer: ragged, no start/end, no padding"),
        (f"tf.data map, batch {args.batch}", "vit_zoo", graph["vit_zoo"], args.batch,
         f"{args.batches} timed batches a round"),
        ("", "keras_hub", graph["keras_hub"], args.batch, "CLIPPreprocessor"),
    ]
    for path, name, seconds, strings, note in rows:
        print(f"  {path:<28} {name:<10} {strings / statistics.median(seconds):8.0f} strings/s"
              + (f"  ({note})" if note else ""))
    print("  ratios (median of per-round ratios):")
    print(f"    vit_zoo in-graph / keras_hub in-graph: "
          f"{speed_ratio(graph['vit_zoo'], graph['keras_hub'])}  (target >= 10)")
    print(f"    vit_zoo eager / open_clip:             "
          f"{speed_ratio(eager['vit_zoo'], eager['open_clip'])}  (target >= 1)")
    print(f"    vit_zoo eager / keras_hub eager:       "
          f"{speed_ratio(eager['vit_zoo'], eager['keras_hub'])}")
    print(f"    vit_zoo eager / keras_hub bare tokenizer: "
          f"{speed_ratio(eager['vit_zoo'], eager['keras_hub_tokenizer'])}")
    print(f"  rows differing from vit_zoo eager (of {len(texts)}):")
    for name, ids in (("vit_zoo in-graph", ours_graph), ("open_clip", open_clip_ids),
                      ("keras_hub eager", keras_hub_eager_ids),
                      ("keras_hub in-graph", keras_hub_graph_ids)):
        print(f"    {name:<19} {differing_rows(reference, ids)}")
    # keras-hub's graph splits words GPT-2's way (digit runs stay whole; CLIP splits digits)
    # and lower-cases ASCII only (tf.strings.lower): name those causes where they apply.
    for name, ids in (("keras_hub eager", keras_hub_eager_ids),
                      ("keras_hub in-graph", keras_hub_graph_ids)):
        differing = np.flatnonzero(np.any(reference != ids, axis=1))
        if not len(differing):
            continue
        digits = sum(bool(re.search(r"\d\d", texts[i])) for i in differing)
        upper = sum(any(c.isupper() and not c.isascii() for c in texts[i]) for i in differing)
        print(f"  {name}: {len(differing)} differing rows, {digits} with a run of digits, "
              f"{upper} with a non-ASCII capital; e.g. {texts[differing[0]]!r}\n"
              f"    vit_zoo   {reference[differing[0]][:18].tolist()}\n"
              f"    keras_hub {ids[differing[0]][:18].tolist()}")

if __name__ == "__main__":
    main()
