//! Real assets fetched from package registries.
