//! Jane Austen's novels from the R package janeaustenr's lazy-load database (`Rdata.rdx` +
//! `Rdata.rdb`, as shipped in Debian's `r-cran-janeaustenr`).
//!
//! `Rdata.rdx` is a gzip-compressed serialized list; its `variables` entry maps each data set's
//! name to `(offset, length)` in `Rdata.rdb`. Each record there is a 4-byte big-endian
//! uncompressed length followed by a zlib stream (for `compressed = 2/3` databases, a one-byte
//! method tag comes first) holding one serialized character vector, one line of text per element.
//!
//! Allowed dependencies: std, flate2, this crate's `rdata` and `error`.

use std::collections::BTreeMap;
use std::io::Read;

use flate2::read::{GzDecoder, ZlibDecoder};

use crate::error::{AssetError, Result};
use crate::rdata::{parse_serialized, RData, RValue};

/// Path of the index inside the Debian package's file system.
pub const RDX_PATH: &str = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx";
/// Path of the database inside the Debian package's file system.
pub const RDB_PATH: &str = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb";

/// Largest decompressed index or record accepted (the real ones are under 2 MB).
const MAX_DECOMPRESSED_BYTES: u64 = 256 << 20;

/// Where one variable's record lies in the `.rdb` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    /// Byte offset in the `.rdb` file.
    pub offset: u64,
    /// Byte length of the record (length prefix included).
    pub len: u64,
}

/// The parsed `.rdx` index.
#[derive(Debug, Clone, PartialEq)]
pub struct LazyLoadIndex {
    /// Variable name → record span, in name order.
    pub variables: BTreeMap<String, RecordSpan>,
    /// Compression code: 1 (zlib, length prefix only), 2 or 3 (method byte after the prefix).
    pub compression: i32,
}

fn rdata_error(context: &str, problem: impl Into<String>) -> AssetError {
    AssetError::RData { context: context.to_owned(), offset: 0, problem: problem.into() }
}

fn inflate(reader: impl Read, context: &str, expected: Option<u64>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| rdata_error(context, format!("decompression failed: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(rdata_error(context, format!("decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")));
    }
    if let Some(expected) = expected {
        if out.len() as u64 != expected {
            return Err(rdata_error(context, format!("decompressed to {} bytes, header says {expected}", out.len())));
        }
    }
    Ok(out)
}

fn as_span(value: &RValue, name: &str) -> Result<RecordSpan> {
    let context = "Rdata.rdx";
    let pair: Vec<f64> = match &value.data {
        RData::Integer(v) => v.iter().map(|&x| f64::from(x)).collect(),
        RData::Real(v) => v.clone(),
        _ => return Err(rdata_error(context, format!("entry {name} is not numeric"))),
    };
    let valid = |x: f64| x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(53);
    match pair.as_slice() {
        [offset, len] if valid(*offset) && valid(*len) => Ok(RecordSpan { offset: *offset as u64, len: *len as u64 }),
        _ => Err(rdata_error(context, format!("entry {name} is not a valid (offset, length) pair"))),
    }
}

/// Parses a gzip-compressed `.rdx` index.
///
/// # Errors
/// [`AssetError::RData`] when it is not gzip, not a serialized list, or lacks `variables`.
pub fn parse_index(rdx_gz: &[u8]) -> Result<LazyLoadIndex> {
    let context = "Rdata.rdx";
    let raw = inflate(GzDecoder::new(rdx_gz), context, None)?;
    let index = parse_serialized(&raw, context)?;
    let variables = index.list_element("variables").ok_or_else(|| rdata_error(context, "no `variables` entry"))?;
    let (RData::List(items), Some(names)) = (&variables.data, variables.names()) else {
        return Err(rdata_error(context, "`variables` is not a named list"));
    };
    if items.len() != names.len() {
        return Err(rdata_error(context, "`variables` names do not match its length"));
    }
    let mut map = BTreeMap::new();
    for (item, name) in items.iter().zip(names) {
        let name = name.clone().ok_or_else(|| rdata_error(context, "NA variable name"))?;
        let span = as_span(item, &name)?;
        map.insert(name, span);
    }
    let compression = match index.list_element("compressed").map(|v| &v.data) {
        Some(RData::Logical(v)) | Some(RData::Integer(v)) if v.len() == 1 => v[0],
        Some(RData::Real(v)) if v.len() == 1 => v[0] as i32,
        None => 1,
        _ => return Err(rdata_error(context, "`compressed` is not a scalar")),
    };
    Ok(LazyLoadIndex { variables: map, compression })
}

/// Reads one record of a `.rdb` database and parses the serialized object in it.
///
/// # Errors
/// [`AssetError::RData`] when the span lies outside the file, the compression method is not
/// zlib or none, or the payload is malformed.
pub fn read_record(rdb: &[u8], span: RecordSpan, compression: i32, name: &str) -> Result<RValue> {
    let context = format!("Rdata.rdb record {name}");
    let start = usize::try_from(span.offset).ok();
    let end = start.and_then(|s| s.checked_add(usize::try_from(span.len).ok()?));
    let record = match (start, end) {
        (Some(s), Some(e)) if e <= rdb.len() && e >= s + 4 => &rdb[s..e],
        _ => {
            return Err(rdata_error(
                &context,
                format!("span {}+{} outside the {}-byte file", span.offset, span.len, rdb.len()),
            ))
        }
    };
    let expected = u64::from(u32::from_be_bytes([record[0], record[1], record[2], record[3]]));
    let payload = &record[4..];
    let raw = match compression {
        1 => inflate(ZlibDecoder::new(payload), &context, Some(expected))?,
        2 | 3 => match payload.split_first() {
            Some((b'Z', rest)) => inflate(ZlibDecoder::new(rest), &context, Some(expected))?,
            Some((b'0', rest)) => rest.to_vec(),
            Some((method, _)) => {
                return Err(rdata_error(
                    &context,
                    format!("compression method {:?} (bzip2/xz) is not supported", char::from(*method)),
                ))
            }
            None => return Err(rdata_error(&context, "empty record")),
        },
        other => return Err(rdata_error(&context, format!("unknown compression code {other}"))),
    };
    parse_serialized(&raw, &context)
}

/// The text file for one novel: its elements joined with `"\n"` plus a final `"\n"`; `NA`
/// elements become empty lines.
pub fn novel_text(lines: &[Option<String>]) -> String {
    let mut text = String::with_capacity(lines.iter().flatten().map(|l| l.len() + 1).sum());
    for line in lines {
        if let Some(line) = line {
            text.push_str(line);
        }
        text.push('\n');
    }
    text
}

/// Reads every character-vector variable of the database and returns name → novel text.
///
/// # Errors
/// As [`parse_index`] and [`read_record`]; also when a variable is not a character vector.
pub fn read_novels(rdx_gz: &[u8], rdb: &[u8]) -> Result<BTreeMap<String, String>> {
    let index = parse_index(rdx_gz)?;
    let mut novels = BTreeMap::new();
    for (name, span) in &index.variables {
        let value = read_record(rdb, *span, index.compression, name)?;
        let RData::Strings(lines) = value.data else {
            return Err(rdata_error(&format!("Rdata.rdb record {name}"), "not a character vector"));
        };
        novels.insert(name.clone(), novel_text(&lines));
    }
    Ok(novels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdata::tests::Xdr;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn zlib(bytes: &[u8]) -> Vec<u8> {
        let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A one-variable database: `book = c("Chapter 1", NA, "It is a truth")`.
    fn tiny_database() -> (Vec<u8>, Vec<u8>) {
        let mut value = Xdr::header_v3();
        value.strsxp(&[Some("Chapter 1"), None, Some("It is a truth")]);
        let mut rdb = (value.0.len() as u32).to_be_bytes().to_vec();
        rdb.extend(zlib(&value.0));

        // list(variables = list(book = c(0L, len)), compressed = TRUE)
        let mut rdx = Xdr::header_v3();
        rdx.int(19 | (1 << 9)).int(2);
        rdx.int(19 | (1 << 9)).int(1);
        rdx.int(13).int(2).int(0).int(rdb.len() as i32);
        rdx.int(2 | (1 << 10));
        rdx.int(1).charsxp(Some("names"), 0);
        rdx.strsxp(&[Some("book")]);
        rdx.int(254);
        rdx.int(10).int(1).int(1);
        rdx.int(2 | (1 << 10));
        rdx.int(255 | (1 << 8));
        rdx.strsxp(&[Some("variables"), Some("compressed")]);
        rdx.int(254);
        (gzip(&rdx.0), rdb)
    }

    #[test]
    fn reads_a_tiny_lazy_load_database() {
        let (rdx, rdb) = tiny_database();
        let novels = read_novels(&rdx, &rdb).unwrap();
        assert_eq!(novels.len(), 1);
        assert_eq!(novels["book"], "Chapter 1\n\nIt is a truth\n");
    }

    #[test]
    fn spans_outside_the_file_are_errors() {
        let (_, rdb) = tiny_database();
        let span = RecordSpan { offset: 2, len: u64::MAX };
        assert!(read_record(&rdb, span, 1, "x").is_err());
        let span = RecordSpan { offset: rdb.len() as u64, len: 4 };
        assert!(read_record(&rdb, span, 1, "x").is_err());
    }

    #[test]
    fn corrupt_records_are_errors() {
        let (rdx, mut rdb) = tiny_database();
        let last = rdb.len() - 3;
        rdb[last] ^= 0xFF;
        assert!(read_novels(&rdx, &rdb).is_err());
        assert!(read_novels(b"not gzip", &rdb).is_err());
    }

    #[test]
    fn novel_text_ends_every_line() {
        assert_eq!(novel_text(&[Some("a".into()), None, Some("b".into())]), "a\n\nb\n");
        assert_eq!(novel_text(&[]), "");
    }
}
