"""Benchmarks of adaptive_conv_ext: `python -m benchmarks` (suite), `python -m benchmarks.profile`
(torch.profiler table of one call), `python -m benchmarks.acceptance` (issue 2's CPU check)."""
