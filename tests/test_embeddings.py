"""Embeddings from the real all-MiniLM-L6-v2 model."""

from __future__ import annotations

import math

import openai
import pytest


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embedding_of_a_string(azure: openai.AzureOpenAI) -> None:
    result = azure.embeddings.create(model="embeddings", input="A cat sits on the mat.")
    assert result.object == "list"
    assert len(result.data) == 1 and result.data[0].index == 0
    assert len(result.data[0].embedding) == 384
    assert result.usage.prompt_tokens == result.usage.total_tokens == 7


def test_similar_sentences_are_closer(azure: openai.AzureOpenAI) -> None:
    texts = ["A kitten is sleeping on the sofa.", "A young cat naps on the couch.", "The stock market fell today."]
    vectors = [d.embedding for d in azure.embeddings.create(model="embeddings", input=texts).data]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3


def test_float_and_base64_encodings_agree(azure: openai.AzureOpenAI) -> None:
    # the SDK asks for base64 unless told otherwise, and decodes it
    as_base64 = azure.embeddings.create(model="embeddings", input="hello").data[0].embedding
    as_float = azure.embeddings.create(model="embeddings", input="hello", encoding_format="float").data[0].embedding
    assert as_base64 == pytest.approx(as_float, abs=1e-6)


def test_token_arrays_embed_like_their_text(azure: openai.AzureOpenAI) -> None:
    by_text = azure.embeddings.create(model="embeddings", input="hello world", encoding_format="float")
    by_tokens = azure.embeddings.create(model="embeddings", input=[[7592, 2088]], encoding_format="float")
    assert cosine(by_text.data[0].embedding, by_tokens.data[0].embedding) > 0.9999


def test_dimensions_are_refused_by_a_fixed_size_model(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.embeddings.create(model="embeddings", input="hi", dimensions=128)
    assert caught.value.body["param"] == "dimensions"


def test_too_long_input_is_context_length_exceeded(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.embeddings.create(model="embeddings", input="word " * 600)
    assert caught.value.code == "context_length_exceeded"
