//! Helpers shared by the GGUF integration tests: a byte-level builder for hand-made (often malformed) headers,
//! and an assertion that a parse fails with a `FormatError::Gguf` naming the file.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::PathBuf;
use vptq_format::gguf::{GgufError, GgufFile};
use vptq_format::FormatError;

/// The path given to `GgufFile::from_bytes`; every error message must contain it.
pub const PATH: &str = "/fixtures/test-model.gguf";

/// Parses bytes as a file at [`PATH`].
pub fn parse(bytes: Vec<u8>) -> Result<GgufFile, FormatError> {
    GgufFile::from_bytes(PathBuf::from(PATH), bytes)
}

/// Parses bytes that must be rejected; returns the GGUF error after checking that it carries the path.
#[track_caller]
pub fn gguf_err(bytes: Vec<u8>) -> GgufError {
    match parse(bytes) {
        Ok(_) => panic!("malformed file was accepted"),
        Err(e) => into_gguf(e),
    }
}

/// Unwraps a `FormatError::Gguf`, checking that both the field and the message name [`PATH`].
#[track_caller]
pub fn into_gguf(e: FormatError) -> GgufError {
    let msg = e.to_string();
    assert!(msg.contains(PATH), "message does not name the file: {msg}");
    match e {
        FormatError::Gguf { path, source } => {
            assert_eq!(path, PathBuf::from(PATH));
            source
        }
        other => panic!("expected FormatError::Gguf, got {other:?}"),
    }
}

/// Little-endian byte builder for GGUF headers, field by field.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    pub bytes: Vec<u8>,
}

impl Raw {
    /// Magic, version, tensor count, metadata count.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        Raw::default().raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv)
    }

    pub fn raw(mut self, b: &[u8]) -> Raw {
        self.bytes.extend_from_slice(b);
        self
    }

    pub fn u8(self, v: u8) -> Raw {
        self.raw(&[v])
    }

    pub fn u32(self, v: u32) -> Raw {
        self.raw(&v.to_le_bytes())
    }

    pub fn u64(self, v: u64) -> Raw {
        self.raw(&v.to_le_bytes())
    }

    /// A length-prefixed string of arbitrary bytes.
    pub fn str_bytes(self, s: &[u8]) -> Raw {
        self.u64(s.len() as u64).raw(s)
    }

    pub fn str(self, s: &str) -> Raw {
        self.str_bytes(s.as_bytes())
    }

    /// A metadata entry with a u32 value.
    pub fn kv_u32(self, key: &str, v: u32) -> Raw {
        self.str(key).u32(4).u32(v)
    }

    /// A metadata entry with a string value.
    pub fn kv_str(self, key: &str, v: &str) -> Raw {
        self.str(key).u32(8).str(v)
    }

    /// A tensor-table entry.
    pub fn tensor(self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(type_id).u64(offset)
    }

    /// Zero padding up to a multiple of `align`.
    pub fn pad_to(mut self, align: usize) -> Raw {
        let n = self.bytes.len().next_multiple_of(align);
        self.bytes.resize(n, 0);
        self
    }

    pub fn zeros(mut self, n: usize) -> Raw {
        self.bytes.resize(self.bytes.len() + n, 0);
        self
    }
}
