"""WorkloadServiceAccount: one identity per deployment with only the project roles it needs."""

import pulumi

from components.service_account import WorkloadServiceAccount, WorkloadServiceAccountArgs


def example() -> pulumi.Output:
    account = WorkloadServiceAccount("serving", WorkloadServiceAccountArgs(
        project="my-project",
        account_id="llm-dev-gemma",
        display_name="vLLM gemma (dev)",
        project_roles=("roles/logging.logWriter",),
    ))
    return account.member
