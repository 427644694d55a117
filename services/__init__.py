"""Edges facing the network and the operator: gRPC services, CLI, demo."""
