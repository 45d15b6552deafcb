"""ProjectApis: enable exactly the APIs a stack needs, left enabled on destroy."""

import pulumi

from components.project_apis import ProjectApis, ProjectApisArgs


def example() -> pulumi.Output:
    apis = ProjectApis("apis", ProjectApisArgs(
        project="my-project",
        services=("run.googleapis.com", "secretmanager.googleapis.com"),
    ))
    return pulumi.Output.from_input(apis.enabled)
