"""Measuring VMs and the host: samplers feeding fixed-size ring buffers. No Qt."""
