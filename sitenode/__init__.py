"""The site's own logic: domain model, optimizer, baselines, bundles and backtests.

Nothing in this package speaks gRPC; where it needs the network it defines the
small interface it needs and `services` implements it.
"""
