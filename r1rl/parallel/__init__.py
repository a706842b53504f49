"""Parallelism: data parallel under accelerate or torchrun, and FSDP2 sharding."""
