"""Reproducing tables: specs (benchmarks/tables/*.toml) -> runs -> aggregated tables."""
