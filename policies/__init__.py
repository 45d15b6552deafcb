"""The llm-serving policy pack. `guardrails` holds the policies; `__main__` serves them to the Pulumi CLI."""
