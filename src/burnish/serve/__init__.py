"""`burnish serve`: one base model and many LoRA adapters behind vLLM's OpenAI-compatible API.

- `engine`: batching of concurrent requests into mixed-adapter batches on a worker thread.
- `adapters`: registered adapters, loaded weights and their LRU.
- `scoring`: prompt log-probs.
- `protocol`, `errors`, `outputs`: request bodies, error and response shapes, choice text.
- `completions`, `chat`: the two generation routes; `state`: what the routes share.
- `app`: the FastAPI application; `cli`: the ``burnish serve`` command.

See docs/serving.md.
"""
