"""llm-serving: vLLM on Vertex AI, Cloud Run GPU and GKE TPU, composed from this stack's config."""

from stacks import program

program.run()
