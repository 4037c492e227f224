"""Runnable examples for adaptive_conv_ext (run from the repository root, e.g.
``python -m examples.paper_claims``)."""
