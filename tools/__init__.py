"""Operator tools: promotion between stack files, the benchmark, the load test, the local vLLM runner,
the Vertex AI client and the config-reference generator."""
