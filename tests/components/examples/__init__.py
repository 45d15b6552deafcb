"""One short usage example per component: each module's ``example()`` builds the component as a
program would and returns one of its outputs. tests/components/test_examples.py runs every example
under the mock engine and checks that output."""
