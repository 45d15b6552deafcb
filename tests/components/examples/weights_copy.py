"""WeightsCopyJob: a Cloud Run job that copies one pinned model revision from the Hugging Face Hub into
the model bucket, once; the only reader of the token. Serving reads the returned gs:// URI."""

import pulumi

from components.weights_copy import WeightsCopyJob, WeightsCopyJobArgs


def example() -> pulumi.Output:
    job = WeightsCopyJob("gemma-weights", WeightsCopyJobArgs(
        project="my-project",
        region="us-central1",
        job_name="llm-dev-gemma-weights",
        model_id="google/gemma-3-1b-it",
        revision="dcc83ea841ab6100d6b47a070329e1ba4cf78752",
        bucket="my-project-llm-models",
        prefix="models/google/gemma-3-1b-it/dcc83ea841ab6100d6b47a070329e1ba4cf78752",
        image="vllm/vllm-openai:v0.32.0",
        service_account_email="llm-dev-gemma-copy@my-project.iam.gserviceaccount.com",
        hf_token_secret="projects/my-project/secrets/hf-token",
    ))
    return job.uri
