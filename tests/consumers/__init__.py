"""The libraries people hand an ``AsyncOpenAI`` to, run with openai's client and with ours."""
