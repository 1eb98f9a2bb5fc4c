//! Stub: the benchmark reuses only the fixtures in tests/support/mod.rs.
