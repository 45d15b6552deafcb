"""The shared rules (components/rules.py) against the values their sources name as valid or not."""

import pytest

from components import rules


@pytest.mark.parametrize("name", ["my-bucket", "acme-llm-prod-llm-prod-models", "a.b.c", "x_y-1", "a" * 63])
def test_valid_bucket_names(name):
    assert rules.bucket_name_problem(name) is None


@pytest.mark.parametrize("name, why", [
    ("goog-models", "goog"), ("my-google-bucket", "google"), ("g00gle-x", "google"), ("a..b", ".."),
    ("ab", "3-63"), ("a" * 64, "3-63"), ("Upper", "lowercase"), ("-dash", "start and end"),
    ("192.168.5.4", "IP address"),
])
def test_invalid_bucket_names(name, why):
    problem = rules.bucket_name_problem(name)
    assert problem is not None and why in problem, (name, problem)


@pytest.mark.parametrize("account_id, ok", [
    ("llm-dev-gemma-1b", True), ("abcdef", True), ("abcde", False), ("a" * 31, False),
    ("llm-dev-x-", False), ("1abcdef", False), ("llm-prod-" + "x" * 21, True),
])
def test_service_account_ids(account_id, ok):
    assert (rules.service_account_id_problem(account_id) is None) is ok


def test_public_members_and_tokens():
    assert rules.is_public_member("allUsers") and rules.is_public_member("allAuthenticatedUsers")
    assert not rules.is_public_member("group:ml@example.com")
    token = "hf_" + "a1B2" * 9
    assert rules.looks_like_token(token) and rules.looks_like_token(f"--api-key={token}")
    assert not rules.looks_like_token("hf-token")
    problem = rules.secret_reference_problem(token)
    assert problem is not None and token not in problem
    assert rules.secret_reference_problem("hf-token") is None
    assert rules.secret_reference_problem("projects/acme/secrets/hf-token") is None


@pytest.mark.parametrize("key, value, ok", [
    ("team", "ml-platform", True), ("Team", "ml", False), ("team", "ML Platform", False),
    ("team", "", True), ("1team", "x", False), ("team", "x" * 64, False),
])
def test_gcp_labels(key, value, ok):
    assert (rules.gcp_label_problem(key, value) is None) is ok


def test_gcp_label_with_a_token_is_refused_without_echoing_it():
    token = "hf_" + "Z" * 30
    problem = rules.gcp_label_problem("owner", token)
    assert problem is not None and token not in problem


@pytest.mark.parametrize("value, ok", [("meta-llama/Llama-3.1-8B-Instruct", True), ("google/gemma-3-1b-it", True),
                                       ("llama", False), ("a/b/c", False), ("org/-bad", False), ("org/a..b", False)])
def test_hugging_face_ids(value, ok):
    assert (rules.hf_model_id_problem(value) is None) is ok


@pytest.mark.parametrize("days, ok", [(0, True), (7, True), (90, True), (1, False), (6, False), (91, False)])
def test_soft_delete_days(days, ok):
    assert (rules.soft_delete_days_problem(days) is None) is ok


@pytest.mark.parametrize("name, ok", [("llm-serving", True), ("a" * 63, True), ("a" * 64, False), ("Upper", False),
                                      ("-x", False)])
def test_dns_labels(name, ok):
    assert (rules.dns_label_problem(name) is None) is ok


def test_pinned_images():
    assert rules.pinned_image_problem("vllm/vllm-openai:v0.32.0") is None
    assert "latest" in rules.pinned_image_problem("vllm/vllm-openai:latest")
    assert "without a tag" in rules.pinned_image_problem("localhost:5000/vllm")
