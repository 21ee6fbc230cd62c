"""openai-python's resources, with a fast ``create`` for the endpoints that produce answers.

Each class subclasses openai's own: every other method, sub-resource and helper (``parse``,
``stream``, ``with_raw_response``...) is inherited and reaches the resilient pipeline through
``AsyncOpenAI.request``. ``create`` skips openai's request building and response parsing when nothing
openai-specific is asked of it (no raw-response wrapper, no custom auth); the request it sends and the
result it returns are the same (``tests/test_fast_path.py`` compares them).
"""

from ._chat import AsyncChat, AsyncChatCompletions
from ._completions import AsyncCompletions
from ._responses import AsyncResponses

__all__ = ["AsyncChat", "AsyncChatCompletions", "AsyncCompletions", "AsyncResponses"]
