"""Capacity planning from a load run: the rate one replica holds under the SLOs, replicas and cost."""
