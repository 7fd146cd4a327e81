"""The paper's experiments (section 5): latency, throughput, the capacity model, the reproduction."""
