//! Safetensors access: memory-mapped files, a folder-wide tensor index (single file or shards listed by
//! `model.safetensors.index.json`), typed reads, and atomic writing.
//!
//! The `safetensors` crate validates the header (offsets inside the file, sizes matching shape × dtype, no
//! overlaps); every failure is reported with the file it came from.

use crate::error::{FormatError, Result};
use half::{bf16, f16};
use safetensors::tensor::{Dtype, Metadata, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One memory-mapped safetensors file with its parsed header.
#[derive(Debug)]
pub struct SafetensorsFile {
    /// Path of the file.
    pub path: PathBuf,
    mmap: memmap2::Mmap,
    header_len: usize,
    metadata: Metadata,
}

/// A borrowed tensor: dtype, shape and raw little-endian bytes.
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// File holding it (for messages).
    pub path: &'a Path,
    /// Element type.
    pub dtype: Dtype,
    /// Row-major shape.
    pub shape: &'a [usize],
    /// Raw bytes.
    pub data: &'a [u8],
}

/// Floating-point tensor data in its stored precision.
#[derive(Debug, Clone, PartialEq)]
pub enum HalfOrFloat {
    /// f32 values.
    F32(Vec<f32>),
    /// f16 values.
    F16(Vec<f16>),
    /// bf16 values.
    Bf16(Vec<bf16>),
}

impl HalfOrFloat {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HalfOrFloat::F32(v) => v.len(),
            HalfOrFloat::F16(v) => v.len(),
            HalfOrFloat::Bf16(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of storage.
    pub fn n_bytes(&self) -> usize {
        match self {
            HalfOrFloat::F32(v) => v.len() * 4,
            HalfOrFloat::F16(v) => v.len() * 2,
            HalfOrFloat::Bf16(v) => v.len() * 2,
        }
    }
}

impl SafetensorsFile {
    /// Maps and validates a safetensors file.
    ///
    /// # Errors
    /// IO errors, or [`FormatError::Safetensors`] naming the file and what is wrong with the header.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| FormatError::io(path, e))?;
        // SAFETY: the map is read-only; a concurrent truncation of the file by another process is outside what a
        // model loader can defend against (the same assumption every mmap-based loader makes).
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap)
            .map_err(|e| FormatError::Safetensors { path: path.to_path_buf(), reason: describe(&e) })?;
        Ok(SafetensorsFile { path: path.to_path_buf(), mmap, header_len, metadata })
    }

    /// Names of all tensors, in data order.
    pub fn names(&self) -> Vec<String> {
        self.metadata.offset_keys()
    }

    /// The tensor `name`, if present.
    pub fn get<'a>(&'a self, name: &'a str) -> Option<TensorRef<'a>> {
        let info = self.metadata.info(name)?;
        let start = 8 + self.header_len + info.data_offsets.0;
        let end = 8 + self.header_len + info.data_offsets.1;
        // Offsets were validated against the file size by `read_metadata`.
        let data = self.mmap.get(start..end)?;
        Some(TensorRef { name, path: &self.path, dtype: info.dtype, shape: &info.shape, data })
    }

    /// Free-form `__metadata__` of the header.
    pub fn user_metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.metadata().as_ref()
    }
}

fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "file shorter than the 8-byte header length".into(),
        E::HeaderTooLarge => "header length is absurd (larger than the format allows)".into(),
        E::InvalidHeaderLength => "header length runs past the end of the file".into(),
        E::MetadataIncompleteBuffer => "tensor data does not match the file size (truncated or padded file)".into(),
        other => other.to_string(),
    }
}

/// All tensors of a model folder (or of one file), by name.
#[derive(Debug)]
pub struct TensorStore {
    /// The folder or file the store was opened from.
    pub root: PathBuf,
    files: Vec<SafetensorsFile>,
    index: BTreeMap<String, usize>,
}

impl TensorStore {
    /// Opens `model.safetensors`, or the shards listed by `model.safetensors.index.json`, of a folder; or one
    /// safetensors file when `path` is a file.
    ///
    /// # Errors
    /// Missing files, malformed index or headers, a tensor listed in the index but absent from its shard, or
    /// a tensor present in two files.
    pub fn open(path: &Path) -> Result<Self> {
        let mut paths = Vec::new();
        if path.is_file() {
            paths.push(path.to_path_buf());
        } else {
            let index_path = path.join("model.safetensors.index.json");
            let single = path.join("model.safetensors");
            if index_path.is_file() {
                #[derive(serde::Deserialize)]
                struct Index {
                    weight_map: BTreeMap<String, String>,
                }
                let index: Index = super::read_json(&index_path)?;
                let mut shards: Vec<String> = index.weight_map.values().cloned().collect();
                shards.sort();
                shards.dedup();
                for shard in shards {
                    if shard.contains('/') || shard.contains('\\') || shard == ".." {
                        return Err(FormatError::Json {
                            path: index_path.clone(),
                            reason: format!("shard name `{shard}` must be a plain file name"),
                        });
                    }
                    paths.push(path.join(shard));
                }
            } else if single.is_file() {
                paths.push(single);
            } else {
                let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| FormatError::io(path, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                    .collect();
                found.sort();
                if found.is_empty() {
                    return Err(FormatError::io(
                        path,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no *.safetensors file in this folder"),
                    ));
                }
                paths = found;
            }
        }
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for p in paths {
            let f = SafetensorsFile::open(&p)?;
            for name in f.metadata.tensors().into_keys() {
                if index.insert(name.clone(), files.len()).is_some() {
                    return Err(FormatError::Safetensors {
                        path: p.clone(),
                        reason: format!("tensor `{name}` also appears in another shard"),
                    });
                }
            }
            files.push(f);
        }
        Ok(TensorStore { root: path.to_path_buf(), files, index })
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(|s| s.as_str())
    }

    /// True if the tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The tensor `name`, if present.
    pub fn get<'a>(&'a self, name: &'a str) -> Option<TensorRef<'a>> {
        let file = &self.files[*self.index.get(name)?];
        file.get(name)
    }

    /// The tensor `name`, or [`FormatError::MissingTensor`].
    ///
    /// # Errors
    /// When absent.
    pub fn require<'a>(&'a self, name: &'a str) -> Result<TensorRef<'a>> {
        self.get(name).ok_or_else(|| FormatError::MissingTensor { path: self.root.clone(), name: name.to_string() })
    }

    /// Total bytes of tensor data.
    pub fn n_bytes(&self) -> usize {
        self.index.keys().filter_map(|n| self.get(n)).map(|t| t.data.len()).sum()
    }

    /// Reads a floating-point tensor in its stored precision, checking its shape.
    ///
    /// # Errors
    /// Missing tensor, wrong shape, or a non-float dtype.
    pub fn read_float(&self, name: &str, expected_shape: &[usize]) -> Result<HalfOrFloat> {
        let t = self.require(name)?;
        t.check_shape(expected_shape)?;
        t.to_half_or_float()
    }

    /// Reads a floating-point tensor widened to f32, checking its shape.
    ///
    /// # Errors
    /// Missing tensor, wrong shape, or a non-float dtype.
    pub fn read_f32(&self, name: &str, expected_shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.require(name)?;
        t.check_shape(expected_shape)?;
        t.to_f32()
    }
}

impl<'a> TensorRef<'a> {
    /// Fails with [`FormatError::ShapeMismatch`] unless the shape is `expected`.
    ///
    /// # Errors
    /// On mismatch.
    pub fn check_shape(&self, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(FormatError::ShapeMismatch {
                path: self.path.to_path_buf(),
                name: self.name.to_string(),
                expected: expected.to_vec(),
                got: self.shape.to_vec(),
            });
        }
        Ok(())
    }

    /// Copies the data out in its stored float precision.
    ///
    /// # Errors
    /// [`FormatError::UnsupportedDtype`] for non-float tensors.
    pub fn to_half_or_float(&self) -> Result<HalfOrFloat> {
        let d = self.data;
        Ok(match self.dtype {
            Dtype::F32 => {
                HalfOrFloat::F32(d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            Dtype::F16 => HalfOrFloat::F16(d.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect()),
            Dtype::BF16 => HalfOrFloat::Bf16(d.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]])).collect()),
            other => return Err(self.unsupported(other)),
        })
    }

    /// Copies the data out widened to f32.
    ///
    /// # Errors
    /// [`FormatError::UnsupportedDtype`] for non-float tensors.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(match self.to_half_or_float()? {
            HalfOrFloat::F32(v) => v,
            HalfOrFloat::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            HalfOrFloat::Bf16(v) => v.iter().map(|x| x.to_f32()).collect(),
        })
    }

    /// Copies the data out as signed bytes (8-bit quantized weights).
    ///
    /// # Errors
    /// [`FormatError::UnsupportedDtype`] unless the dtype is I8.
    pub fn to_i8(&self) -> Result<Vec<i8>> {
        match self.dtype {
            Dtype::I8 => Ok(self.data.iter().map(|&b| b as i8).collect()),
            other => Err(self.unsupported(other)),
        }
    }

    fn unsupported(&self, dtype: Dtype) -> FormatError {
        FormatError::UnsupportedDtype {
            path: self.path.to_path_buf(),
            name: self.name.to_string(),
            dtype: format!("{dtype:?}"),
        }
    }
}

/// A tensor to write: name, dtype, shape and little-endian bytes.
#[derive(Debug, Clone)]
pub struct OwnedTensor {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Raw bytes.
    pub data: Vec<u8>,
}

impl OwnedTensor {
    /// A tensor from float data in its own precision.
    pub fn from_float(name: impl Into<String>, shape: Vec<usize>, data: &HalfOrFloat) -> Self {
        let (dtype, bytes) = match data {
            HalfOrFloat::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            HalfOrFloat::F16(v) => (Dtype::F16, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            HalfOrFloat::Bf16(v) => (Dtype::BF16, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        OwnedTensor { name: name.into(), dtype, shape, data: bytes }
    }
}

impl OwnedTensor {
    /// A tensor of signed bytes (I8), e.g. 8-bit quantized weights.
    pub fn from_i8(name: impl Into<String>, shape: Vec<usize>, data: &[i8]) -> Self {
        OwnedTensor { name: name.into(), dtype: Dtype::I8, shape, data: data.iter().map(|&v| v as u8).collect() }
    }
}

/// Writes tensors to a safetensors file atomically (temporary sibling, then rename).
///
/// # Errors
/// IO errors, or a tensor whose byte length disagrees with its shape and dtype.
pub fn write_safetensors(
    path: &Path,
    tensors: &[OwnedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.data).map_err(|e| FormatError::Safetensors {
            path: path.to_path_buf(),
            reason: format!("tensor `{}`: {e}", t.name),
        })?;
        views.push((t.name.as_str(), view));
    }
    let tmp = crate::atomic::temp_path(path);
    let result = safetensors::serialize_to_file(views, metadata, &tmp)
        .map_err(|e| FormatError::Safetensors { path: path.to_path_buf(), reason: e.to_string() })
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| FormatError::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i8_tensors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let values: Vec<i8> = vec![-128, -127, -1, 0, 1, 127];
        let t = OwnedTensor::from_i8("q", vec![2, 3], &values);
        let f = OwnedTensor::from_float("f", vec![1], &HalfOrFloat::F32(vec![1.5]));
        write_safetensors(&path, &[t, f], None).unwrap();
        let file = SafetensorsFile::open(&path).unwrap();
        let q = file.get("q").unwrap();
        assert_eq!((q.dtype, q.shape), (Dtype::I8, &[2usize, 3][..]));
        assert_eq!(q.to_i8().unwrap(), values);
        assert!(matches!(q.to_f32(), Err(FormatError::UnsupportedDtype { .. })), "int8 is not read as float");
        assert!(matches!(file.get("f").unwrap().to_i8(), Err(FormatError::UnsupportedDtype { .. })));
    }
}
