"""resilient_llm: a drop-in AsyncOpenAI that never hangs."""
