"""The offline engine: Pulumi's mock engine answering like Google Cloud, the program runner, the plan CLI
and the Kubernetes manifest writer. Imports the program; the program never imports it."""
