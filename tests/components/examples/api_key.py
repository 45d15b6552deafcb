"""ServingApiKey: an API key for a vLLM server, generated and kept in Secret Manager; read with
the gcloud command it outputs."""

import pulumi

from components.api_key import ServingApiKey, ServingApiKeyArgs


def example() -> pulumi.Output:
    key = ServingApiKey("llama-key", ServingApiKeyArgs(
        project="my-project",
        region="us-central1",
        secret_id="llm-dev-llama-api-key",
        labels={"environment": "dev"},
    ))
    return key.access_command
