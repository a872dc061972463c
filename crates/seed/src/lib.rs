//! The `seed` service (being written).
