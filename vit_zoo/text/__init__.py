"""CLIP's byte-pair tokenizer (eager and in-graph) and its vocabulary (OpenAI, MIT license)."""

from vit_zoo.text.tokenizer import DEFAULT_CONTEXT_LENGTH, CLIPTokenizer

__all__ = ["CLIPTokenizer", "DEFAULT_CONTEXT_LENGTH"]
