//! Evaluation: perplexity over fixed non-overlapping windows (the protocol of `shared/docs/data.md`), and the
//! prefill/decode speed benchmark with peak memory and the memory-bandwidth bound.
//!
//! Depends on `vptq-model`; prints nothing (callers get reports and progress callbacks).

pub mod bench;
pub mod perplexity;

pub use bench::{bench, measure_read_bandwidth, BenchOptions, BenchReport, WeightBytes};
pub use perplexity::{perplexity, PplOptions, PplReport};
