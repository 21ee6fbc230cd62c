"""The base of every response type: a pydantic model that keeps what it does not know.

Servers add fields openai's schema lacks (vLLM's ``stop_reason``, ``token_ids``,
``prompt_token_ids``...). Every model here sets ``extra="allow"`` so those stay readable as
attributes and survive ``model_dump()``. Construction is plain ``model_validate`` with no
custom validators: these objects are built once per response on the hot path.

Required fields are the ones openai-python requires, except constant tags (``object``,
``role``, ``type``), which default to their usual value, and ``finish_reason``, which a
server may leave null. Enumerations (``finish_reason``, ``role``, ``object``...) are plain
``str``: a server's unusual value is passed on rather than failing the call.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pydantic

__all__ = ["BaseModel", "ReasoningModel"]


class BaseModel(pydantic.BaseModel):
    """A response object: attribute access, ``model_dump()``, and openai's ``to_dict()``/``to_json()``."""

    model_config: ClassVar[pydantic.ConfigDict] = pydantic.ConfigDict(extra="allow")

    def to_dict(
        self,
        *,
        mode: Literal["json", "python"] = "python",
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> dict[str, object]:
        """The object as a dict with the server's keys; by default only the fields the server sent."""
        return self.model_dump(
            mode=mode,
            by_alias=use_api_names,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
            warnings=warnings,
        )

    def to_json(
        self,
        *,
        indent: int | None = 2,
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> str:
        """The object as JSON text (indented by default); by default only the fields the server sent."""
        return self.model_dump_json(
            indent=indent,
            by_alias=use_api_names,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
            warnings=warnings,
        )

    def __str__(self) -> str:
        return repr(self)


class ReasoningModel(BaseModel):
    """``reasoning`` and ``reasoning_content`` both read the reasoning text, whichever name the server used.

    vLLM before 0.32 sends ``reasoning_content``; 0.32 renamed it ``reasoning``. Neither is a declared
    field: the server's key stays in the model's extras as sent (so dumps are faithful) and these
    properties read it, at no cost to validation.
    """

    @property
    def reasoning(self) -> str | None:
        """The model's reasoning text (vLLM ``reasoning`` or ``reasoning_content``), or ``None``."""
        extra = self.__pydantic_extra__
        if not extra:
            return None
        text = extra.get("reasoning")
        if text is None:
            text = extra.get("reasoning_content")
        return text if isinstance(text, str) else None

    @property
    def reasoning_content(self) -> str | None:
        """The same text as :attr:`reasoning`, under the name vLLM used before 0.32."""
        return self.reasoning
