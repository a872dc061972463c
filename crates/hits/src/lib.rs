//! The `hits` service (being written).
