"""Workloads: the spike-trace format, the layer graph, and trace producers."""
