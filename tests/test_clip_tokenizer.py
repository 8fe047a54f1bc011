"""CLIPTokenizer: ids identical to open_clip's on a varied corpus, eager and in-graph."""

from __future__ import annotations

import json
import random
import re
import sys
import textwrap

import ftfy
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import run_python
from tests.text_corpus import corpus
from vit_zoo import CLIPTokenizer
from vit_zoo.text import cleaning


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return corpus()


@pytest.fixture(scope="module")
def reference(texts, tmp_path_factory):
    """open_clip's ids (with and without ftfy) for the corpus, computed in another process."""
    out = tmp_path_factory.mktemp("open_clip_tokens")
    (out / "texts.json").write_text(json.dumps(texts))
    from tests.helpers import REFERENCE_DIR

    run_python([str(REFERENCE_DIR / "open_clip_tokenize.py"), str(out), str(out / "texts.json")])
    return {
        name: np.load(out / f"{name}.npy") for name in ("ids", "ids_without_ftfy", "ftfy_changes")
    }


@pytest.fixture(scope="module")
def tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer()


def _mismatches(texts, ours, theirs) -> list[str]:
    rows = np.nonzero(~(ours == theirs).all(axis=1))[0]
    return [repr(texts[i])[:120] for i in rows]


def test_corpus_is_large_and_varied(texts, reference):
    assert len(texts) >= 5000
    assert any(len(t) > 2000 for t in texts) and "" in texts
    ends = reference["ids"][:, -1]
    assert (ends == 49407).sum() > 100, "too few texts long enough to be truncated"
    assert reference["ftfy_changes"].sum() > 300, "too few texts that ftfy repairs"


def test_eager_path_equals_open_clip(texts, reference, tokenizer):
    ours = tokenizer(texts)
    assert ours.dtype == np.int32 and ours.shape == (len(texts), 77)
    assert not _mismatches(texts, ours, reference["ids"])


def test_graph_path_equals_open_clip_wherever_ftfy_changes_nothing(texts, reference, tokenizer):
    ours = tokenizer(tf.constant(texts)).numpy()
    # The full statement: the graph path is open_clip with ftfy.fix_text left out ...
    assert not _mismatches(texts, ours, reference["ids_without_ftfy"])
    # ... so it equals open_clip itself on every text that ftfy leaves unchanged,
    unchanged = ~reference["ftfy_changes"]
    assert not _mismatches(
        [t for t, u in zip(texts, unchanged) if u], ours[unchanged], reference["ids"][unchanged]
    )
    # and the texts where they differ are exactly ones ftfy repairs (the documented list).
    differ = ~(ours == reference["ids"]).all(axis=1)
    assert differ.any() and not (differ & unchanged).any()
    print(
        f"\ngraph path: {unchanged.sum()} of {len(texts)} texts untouched by ftfy, all equal; "
        f"{differ.sum()} of the {(~unchanged).sum()} that ftfy repairs tokenize differently"
    )


def test_graph_path_inside_tf_data_in_batches_and_one_by_one(texts, reference, tokenizer):
    sample = texts[::10]
    expected = reference["ids_without_ftfy"][::10]
    batched = tf.data.Dataset.from_tensor_slices(sample).batch(64).map(tokenizer.graph)
    assert np.array_equal(np.concatenate([b.numpy() for b in batched]), expected)
    single = tf.data.Dataset.from_tensor_slices(sample[:50]).map(tokenizer.graph)
    assert np.array_equal(np.stack([s.numpy() for s in single]), expected[:50])


def test_ftfy_shortcut_is_exact(texts):
    """cleaning.repair skips ftfy on printable ASCII without "&": ftfy must leave those alone."""
    rng = random.Random(1)
    alphabet = [chr(c) for c in range(0x20, 0x7F)] + ["\t", "\n"]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(20000)]
    skipped = [t for t in texts + fuzz if cleaning._FTFY_IDENTITY.fullmatch(t)]
    assert len(skipped) > 15000
    assert all(ftfy.fix_text(t) == t for t in skipped)


def test_graph_cleaning_matches_python_on_every_code_point(tokenizer):
    """Whitespace and lower case spelled out in the graph equal Python's, for each character."""
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    texts = [f"A{c}b{c}" for c in chars]
    graph = tokenizer.graph.clean(tf.constant(texts)).numpy()
    expected = [cleaning.clean(t, fix_text=False).encode() for t in texts]
    bad = [hex(ord(c)) for c, g, e in zip(chars, graph, expected) if g != e]
    assert not bad, bad[:20]


def test_context_length_truncation_and_shapes(tokenizer):
    long_text = "word " * 200
    ids = tokenizer([long_text, "a cat"], context_length=10)
    assert ids.shape == (2, 10)
    assert ids[0, 0] == tokenizer.start_of_text and ids[0, -1] == tokenizer.end_of_text
    assert (
        ids[1].tolist()[:4]
        == [tokenizer.start_of_text, *tokenizer.encode("a cat"), tokenizer.end_of_text]
        and ids[1, 4:].sum() == 0
    )
    graph = tokenizer(tf.constant([long_text, "a cat"]), context_length=10).numpy()
    assert np.array_equal(ids, graph)
    assert tokenizer("a cat").shape == (1, 77)
    assert tokenizer(tf.constant("a cat")).shape == (77,)
    with pytest.raises(ValueError, match="context_length"):
        CLIPTokenizer(context_length=1)
    with pytest.raises(TypeError, match="str or bytes"):
        tokenizer([3])


def test_decode_round_trips_clean_text(tokenizer):
    text = "A photo of 2 cats & a dog, naïve café 😀"
    assert tokenizer.decode(tokenizer(text)[0]) == "a photo of 2 cats & a dog , naïve café 😀"


def test_saved_model_serves_tokenizer_in_a_fresh_process(tmp_path, tokenizer):
    """A SavedModel holding only core ops: loads in a process that never imports vit_zoo."""
    module = tf.Module()
    module.tokenizer = tokenizer.graph
    module.serve = tf.function(
        lambda texts: {"token_ids": tokenizer.graph(texts)},
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    path = tmp_path / "tokenizer"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    texts = ["a photo of a cat", "&lt;b&gt; Ünïcödé  ", "x" * 500]
    out = run_python(
        [
            "-c",
            textwrap.dedent(f"""
        import json, sys, tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        ids = loaded.signatures["serving_default"](tf.constant({texts!r}))["token_ids"]
        print(json.dumps(ids.numpy().tolist()))
        assert "vit_zoo" not in sys.modules and "tensorflow_text" not in sys.modules
    """),
        ]
    )
    served = np.array(json.loads(out.strip().splitlines()[-1]))
    assert np.array_equal(served, tokenizer(texts, fix_text=False))
    ops = {
        node.op
        for f in module.serve.get_concrete_function().graph.as_graph_def().library.function
        for node in f.node_def
    }
    assert not {
        op for op in ops if re.search(r"(Sentencepiece|Wordpiece|RegexSplit|Normalize)", op)
    }
