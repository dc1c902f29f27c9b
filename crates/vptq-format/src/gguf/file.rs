//! [`GgufFile`]: opening (memory-mapped or from owned bytes), typed metadata getters that name the key on error,
//! tensor lookup and dequantization. Every error is a [`FormatError::Gguf`] carrying the file path.

use super::types::Backing;
use super::{dequant, reader, GgufError, GgufFile, MetaValue, TensorInfo};
use crate::error::FormatError;
use std::path::{Path, PathBuf};

/// Metadata key naming the model architecture (`llama`, `qwen2`, …).
pub const ARCHITECTURE_KEY: &str = "general.architecture";

impl GgufFile {
    /// Opens, memory-maps and validates a GGUF file: header, metadata and tensor table are parsed, and every
    /// tensor's data is checked to lie inside the file. Tensor data is not read until asked for.
    ///
    /// # Errors
    /// [`FormatError::Io`] when the file cannot be opened or mapped; [`FormatError::Gguf`] when its content is
    /// malformed.
    pub fn open(path: &Path) -> Result<GgufFile, FormatError> {
        let file = std::fs::File::open(path).map_err(|e| FormatError::io(path, e))?;
        // SAFETY: the map is read-only and private to this struct. Another process truncating or rewriting the
        // file while it is mapped could change or remove the bytes under us (the usual caveat of every mmap-based
        // model loader); model files are not modified in place in normal use.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        Self::from_backing(path.to_path_buf(), Backing::Mmap(mmap))
    }

    /// Parses and validates a GGUF file held in memory; `path` is only used in error messages.
    ///
    /// # Errors
    /// [`FormatError::Gguf`] when the content is malformed.
    pub fn from_bytes(path: PathBuf, bytes: Vec<u8>) -> Result<GgufFile, FormatError> {
        Self::from_backing(path, Backing::Owned(bytes))
    }

    fn from_backing(path: PathBuf, backing: Backing) -> Result<GgufFile, FormatError> {
        match reader::parse(backing.bytes()) {
            Ok(p) => Ok(GgufFile {
                path,
                version: p.version,
                metadata: p.metadata,
                tensors: p.tensors,
                data_offset: p.data_offset,
                alignment: p.alignment,
                backing,
            }),
            Err(source) => Err(FormatError::Gguf { path, source }),
        }
    }

    /// Wraps a [`GgufError`] with this file's path.
    pub fn error(&self, source: GgufError) -> FormatError {
        FormatError::Gguf { path: self.path.clone(), source }
    }

    /// Size of the whole file in bytes.
    pub fn file_size(&self) -> usize {
        self.backing.bytes().len()
    }

    /// The metadata value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The model architecture (`general.architecture`).
    ///
    /// # Errors
    /// Missing key or not a string.
    pub fn architecture(&self) -> Result<&str, FormatError> {
        self.get_str(ARCHITECTURE_KEY)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, FormatError> {
        self.get(key).ok_or_else(|| self.error(GgufError::MissingKey { key: key.into() }))
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &MetaValue) -> FormatError {
        self.error(GgufError::WrongKeyType { key: key.into(), expected: expected.into(), found: found.type_name() })
    }

    fn out_of_range(&self, key: &str, value: &MetaValue, target: &str) -> FormatError {
        let value = match value {
            MetaValue::String(s) => s.clone(),
            v => v.as_i64().map(|i| i.to_string()).or_else(|| v.as_u64().map(|u| u.to_string())).unwrap_or_default(),
        };
        self.error(GgufError::ValueOutOfRange { key: key.into(), value, target: target.into() })
    }

    /// A string value.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] or [`GgufError::WrongKeyType`] (wrapped with the path).
    pub fn get_str(&self, key: &str) -> Result<&str, FormatError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong_type(key, "string", v))
    }

    /// An unsigned integer value, from any integer type.
    ///
    /// # Errors
    /// Missing key, a non-integer ([`GgufError::WrongKeyType`]) or a negative integer
    /// ([`GgufError::ValueOutOfRange`]).
    pub fn get_u64(&self, key: &str) -> Result<u64, FormatError> {
        let v = self.require(key)?;
        match (v.as_u64(), v.as_i64()) {
            (Some(u), _) => Ok(u),
            (None, Some(_)) => Err(self.out_of_range(key, v, "u64")),
            (None, None) => Err(self.wrong_type(key, "unsigned integer", v)),
        }
    }

    /// An unsigned 32-bit value, from any integer type whose value fits.
    ///
    /// # Errors
    /// As [`GgufFile::get_u64`], or [`GgufError::ValueOutOfRange`] above `u32::MAX`.
    pub fn get_u32(&self, key: &str) -> Result<u32, FormatError> {
        let u = self.get_u64(key)?;
        u32::try_from(u).map_err(|_| self.out_of_range(key, &MetaValue::U64(u), "u32"))
    }

    /// A float value, from any float or integer type (rounded to f32).
    ///
    /// # Errors
    /// Missing key or a non-numeric value.
    pub fn get_f32(&self, key: &str) -> Result<f32, FormatError> {
        let v = self.require(key)?;
        v.as_f64().map(|f| f as f32).ok_or_else(|| self.wrong_type(key, "number", v))
    }

    /// A bool value.
    ///
    /// # Errors
    /// Missing key or not a bool.
    pub fn get_bool(&self, key: &str) -> Result<bool, FormatError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong_type(key, "bool", v))
    }

    fn get_array(&self, key: &str, expected: &str) -> Result<&[MetaValue], FormatError> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| self.wrong_type(key, expected, v))
    }

    /// An array of strings (borrowed).
    ///
    /// # Errors
    /// Missing key, not an array, or an element that is not a string.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, FormatError> {
        const EXPECTED: &str = "array of strings";
        let arr = self.get_array(key, EXPECTED)?;
        arr.iter().map(|e| e.as_str().ok_or_else(|| self.wrong_type(key, EXPECTED, e))).collect()
    }

    /// An array of numbers of any float or integer type, as f32.
    ///
    /// # Errors
    /// Missing key, not an array, or a non-numeric element.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, FormatError> {
        const EXPECTED: &str = "array of numbers";
        let arr = self.get_array(key, EXPECTED)?;
        arr.iter().map(|e| e.as_f64().map(|f| f as f32).ok_or_else(|| self.wrong_type(key, EXPECTED, e))).collect()
    }

    /// An array of integers of any integer type, as i32.
    ///
    /// # Errors
    /// Missing key, not an array, a non-integer element, or one outside the i32 range
    /// ([`GgufError::ValueOutOfRange`]).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, FormatError> {
        const EXPECTED: &str = "array of integers";
        let arr = self.get_array(key, EXPECTED)?;
        arr.iter()
            .map(|e| match (e.as_i64(), e.as_u64()) {
                (Some(i), _) => i32::try_from(i).map_err(|_| self.out_of_range(key, e, "i32")),
                (None, Some(_)) => Err(self.out_of_range(key, e, "i32")),
                (None, None) => Err(self.wrong_type(key, EXPECTED, e)),
            })
            .collect()
    }

    /// Like [`GgufFile::get_u64`], but `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// A present value of the wrong type or range.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, FormatError> {
        self.get(key).map(|_| self.get_u64(key)).transpose()
    }

    /// Like [`GgufFile::get_u32`], but `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// A present value of the wrong type or range.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, FormatError> {
        self.get(key).map(|_| self.get_u32(key)).transpose()
    }

    /// Like [`GgufFile::get_f32`], but `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// A present value of the wrong type.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, FormatError> {
        self.get(key).map(|_| self.get_f32(key)).transpose()
    }

    /// Like [`GgufFile::get_str`], but `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// A present value of the wrong type.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, FormatError> {
        self.get(key).map(|_| self.get_str(key)).transpose()
    }

    /// Like [`GgufFile::get_bool`], but `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// A present value of the wrong type.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, FormatError> {
        self.get(key).map(|_| self.get_bool(key)).transpose()
    }

    /// The tensor-table entry named `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor's data (`t.n_bytes` of them). Bounds were validated when the file was opened,
    /// so this never fails for an entry of this file's table; for an entry from elsewhere that does not fit in
    /// this file it returns an empty slice.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        let range = self.data_offset.checked_add(t.offset).and_then(|s| Some(s..s.checked_add(t.n_bytes)?));
        range.and_then(|r| self.backing.bytes().get(r)).unwrap_or(&[])
    }

    /// Dequantizes the tensor named `name` to f32, in ggml memory order (row-major with `dims[0]` fastest,
    /// i.e. shape [`TensorInfo::shape`]).
    ///
    /// # Errors
    /// [`FormatError::MissingTensor`] if absent, [`FormatError::UnsupportedDtype`] for a type without a
    /// dequantizer.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, FormatError> {
        let t = self
            .tensor(name)
            .ok_or_else(|| FormatError::MissingTensor { path: self.path.clone(), name: name.into() })?;
        self.dequantize_tensor(t)
    }

    /// Dequantizes one tensor-table entry of this file (see [`GgufFile::dequantize`]).
    ///
    /// # Errors
    /// [`FormatError::UnsupportedDtype`] for a type without a dequantizer; [`FormatError::Gguf`] if `t` is not
    /// an entry of this file.
    pub fn dequantize_tensor(&self, t: &TensorInfo) -> Result<Vec<f32>, FormatError> {
        if !dequant::is_supported(t.ggml_type) {
            return Err(FormatError::UnsupportedDtype {
                path: self.path.clone(),
                name: t.name.clone(),
                dtype: t.ggml_type.name().into(),
            });
        }
        dequant::dequantize(t.ggml_type, self.tensor_bytes(t), t.n_elements()).map_err(|e| self.error(e))
    }
}
