"""The companion's mind, independent of HTTP: memory, embeddings, emotion, privacy, feedback, prompts."""
