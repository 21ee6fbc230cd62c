"""The openai-compatible surface: ``client.chat.completions``, ``completions``, ``embeddings``,
``models`` and ``responses``. Each method builds the request and hands it to the client's engine."""

from ._chat import AsyncChat
from ._chat import AsyncCompletions as AsyncChatCompletions
from ._completions import AsyncCompletions
from ._embeddings import AsyncEmbeddings
from ._models import AsyncModels
from ._responses import AsyncResponses

__all__ = [
    "AsyncChat",
    "AsyncChatCompletions",
    "AsyncCompletions",
    "AsyncEmbeddings",
    "AsyncModels",
    "AsyncResponses",
]
