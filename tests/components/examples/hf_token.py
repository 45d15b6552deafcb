"""HuggingFaceToken: the Hugging Face token in Secret Manager, from a Pulumi secret, readable by
named accounts only."""

import pulumi

from components.hf_token import HuggingFaceToken, HuggingFaceTokenArgs
from components.iam import Grant


def example() -> pulumi.Output:
    token = HuggingFaceToken("hf-token", HuggingFaceTokenArgs(
        project="my-project",
        region="us-central1",
        labels={"environment": "dev"},
        secret_id="llm-dev-hf-token",
        token=pulumi.Output.secret("hf_example_not_a_real_token"),
        accessors={"serving": Grant(role="roles/secretmanager.secretAccessor",
                                    member="serviceAccount:vllm@my-project.iam.gserviceaccount.com")},
    ))
    return token.secret_id
