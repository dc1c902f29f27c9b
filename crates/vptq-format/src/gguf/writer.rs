//! GGUF writer (used to build test fixtures).

/// Builds a GGUF file in memory.
#[derive(Debug, Default)]
pub struct GgufWriter {}
