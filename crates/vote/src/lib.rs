//! The `vote` service (being written).
