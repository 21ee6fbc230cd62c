"""``embeddings.create``: :class:`CreateEmbeddingResponse`."""

from __future__ import annotations

from ._base import BaseModel

__all__ = ["CreateEmbeddingResponse", "Embedding", "EmbeddingUsage"]


class Embedding(BaseModel):
    """One input's vector (as floats: request ``encoding_format="float"``, the default here)."""

    embedding: list[float]
    index: int
    object: str = "embedding"


class EmbeddingUsage(BaseModel):
    """Token counts (openai-python calls this ``create_embedding_response.Usage``)."""

    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: str = "list"
