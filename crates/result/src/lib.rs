//! The `result` service (being written).
