"""``models.list`` / ``models.retrieve``: :class:`Model`."""

from __future__ import annotations

from ._base import BaseModel

__all__ = ["Model"]


class Model(BaseModel):
    """A served model. vLLM adds ``root``, ``parent``, ``max_model_len`` and ``permission``."""

    id: str
    created: int
    owned_by: str
    object: str = "model"
    shutdown_date: str | None = None
