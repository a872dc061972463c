//! The `worker` service (being written).
