"""ModelBucket: a private bucket for weights and adapters, readers granted additively."""

import pulumi

from components.iam import Grant
from components.model_bucket import ModelBucket, ModelBucketArgs


def example() -> pulumi.Output:
    bucket = ModelBucket("models", ModelBucketArgs(
        project="my-project",
        bucket_name="my-project-llm-models",
        location="us-central1",
        labels={"environment": "dev"},
        grants={"serving": Grant(role="roles/storage.objectViewer",
                                 member="serviceAccount:vllm@my-project.iam.gserviceaccount.com")},
    ))
    return bucket.url
