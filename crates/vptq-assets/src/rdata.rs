//! A small reader for R's XDR serialization format (`serialize()`, `saveRDS()`, lazy-load
//! databases), enough to read the Jane Austen character vectors without R.
//!
//! Format, as written by R's `serialize.c`: a `"X\n"` header, then big-endian i32s `version`
//! (2 or 3), `writer_version`, `min_reader_version`, and for version 3 a native-encoding string.
//! Then one item: a flags word (`type = flags & 0xFF`, bit 8 object, bit 9 has-attributes,
//! bit 10 has-tag, `levels = flags >> 12`) followed by a type-specific body. Untrusted input:
//! every length is capped by the bytes that remain, nesting depth is capped, and nothing panics.
//!
//! Allowed dependencies: std and this crate's error type.

use crate::error::{AssetError, Result};

/// One R value together with its attributes (`names`, `class`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct RValue {
    /// The value itself.
    pub data: RData,
    /// Attributes in serialization order: (attribute name, value).
    pub attributes: Vec<(String, RValue)>,
}

/// The payload of an R value. Types this project never needs are kept as opaque markers.
#[derive(Debug, Clone, PartialEq)]
pub enum RData {
    /// `NULL` (and the other special singletons such as the global environment).
    Null,
    /// A symbol (`SYMSXP`).
    Symbol(String),
    /// A single string (`CHARSXP`); `None` is `NA_character_`.
    Char(Option<String>),
    /// A logical vector (`LGLSXP`); `i32::MIN` is `NA`.
    Logical(Vec<i32>),
    /// An integer vector (`INTSXP`); `i32::MIN` is `NA`.
    Integer(Vec<i32>),
    /// A double vector (`REALSXP`).
    Real(Vec<f64>),
    /// A complex vector (`CPLXSXP`) as (re, im) pairs.
    Complex(Vec<(f64, f64)>),
    /// A raw vector (`RAWSXP`).
    Raw(Vec<u8>),
    /// A character vector (`STRSXP`); `None` elements are `NA`.
    Strings(Vec<Option<String>>),
    /// A generic vector / list (`VECSXP`, `EXPRSXP`).
    List(Vec<RValue>),
    /// A pairlist or call (`LISTSXP`, `LANGSXP`, ...): (tag, value) nodes in order.
    Pairlist(Vec<(Option<String>, RValue)>),
    /// An environment; its contents are read (to stay in sync) but not kept.
    Environment,
    /// Any other type, by its R type code; its contents are not kept.
    Opaque(u8),
}

impl RValue {
    fn plain(data: RData) -> Self {
        RValue { data, attributes: Vec::new() }
    }

    /// The attribute called `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&RValue> {
        self.attributes.iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }

    /// The `names` attribute as strings (`NA` names become `None`).
    pub fn names(&self) -> Option<&[Option<String>]> {
        match &self.attribute("names")?.data {
            RData::Strings(names) => Some(names),
            _ => None,
        }
    }

    /// For a named list: the element called `name`.
    pub fn list_element(&self, name: &str) -> Option<&RValue> {
        let RData::List(items) = &self.data else {
            return None;
        };
        let names = self.names()?;
        names.iter().position(|n| n.as_deref() == Some(name)).and_then(|i| items.get(i))
    }
}

// R type codes (SEXPTYPE) and the pseudo-types used only in serialization.
const NILSXP: u8 = 0;
const SYMSXP: u8 = 1;
const LISTSXP: u8 = 2;
const CLOSXP: u8 = 3;
const ENVSXP: u8 = 4;
const PROMSXP: u8 = 5;
const LANGSXP: u8 = 6;
const SPECIALSXP: u8 = 7;
const BUILTINSXP: u8 = 8;
const CHARSXP: u8 = 9;
const LGLSXP: u8 = 10;
const INTSXP: u8 = 13;
const REALSXP: u8 = 14;
const CPLXSXP: u8 = 15;
const STRSXP: u8 = 16;
const DOTSXP: u8 = 17;
const VECSXP: u8 = 19;
const EXPRSXP: u8 = 20;
const BCODESXP: u8 = 21;
const EXTPTRSXP: u8 = 22;
const WEAKREFSXP: u8 = 23;
const RAWSXP: u8 = 24;
const S4SXP: u8 = 25;
const ALTREP_SXP: u8 = 238;
const ATTRLISTSXP: u8 = 239;
const ATTRLANGSXP: u8 = 240;
const BASEENV_SXP: u8 = 241;
const EMPTYENV_SXP: u8 = 242;
const NAMESPACESXP: u8 = 249;
const PACKAGESXP: u8 = 248;
const PERSISTSXP: u8 = 247;
const BASENAMESPACE_SXP: u8 = 250;
const MISSINGARG_SXP: u8 = 251;
const UNBOUNDVALUE_SXP: u8 = 252;
const GLOBALENV_SXP: u8 = 253;
const NILVALUE_SXP: u8 = 254;
const REFSXP: u8 = 255;

const IS_OBJECT_BIT: u32 = 1 << 8;
const HAS_ATTR_BIT: u32 = 1 << 9;
const HAS_TAG_BIT: u32 = 1 << 10;
// CHARSXP encoding bits, inside `levels`.
const LATIN1_MASK: u32 = 1 << 2;

/// Deepest nesting accepted (R itself refuses far shallower real data).
const MAX_DEPTH: usize = 256;

/// Parses one serialized R object (the whole stream, header included). `context` names the
/// stream in error messages.
///
/// # Errors
/// [`AssetError::RData`] for any malformed, truncated or unsupported input.
pub fn parse_serialized(bytes: &[u8], context: &str) -> Result<RValue> {
    let mut reader = Reader { bytes, pos: 0, context, refs: Vec::new() };
    reader.header()?;
    reader.item(0)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    context: &'a str,
    /// Reference table (symbols, environments, ...), 1-based in the stream.
    refs: Vec<RValue>,
}

impl Reader<'_> {
    fn error(&self, problem: impl Into<String>) -> AssetError {
        AssetError::RData { context: self.context.to_owned(), offset: self.pos, problem: problem.into() }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.remaining() {
            return Err(self.error(format!("truncated: need {n} bytes, {} left", self.remaining())));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64> {
        let b = self.take(8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        Ok(f64::from_be_bytes(raw))
    }

    fn header(&mut self) -> Result<()> {
        let magic = self.take(2)?;
        if magic != b"X\n" {
            let found = String::from_utf8_lossy(magic).into_owned();
            self.pos = 0;
            return Err(self.error(format!("unsupported format {found:?} (only XDR \"X\\n\" is read)")));
        }
        let version = self.i32()?;
        let _writer_version = self.i32()?;
        let _min_reader_version = self.i32()?;
        match version {
            2 => Ok(()),
            3 => {
                let n = self.i32()?;
                let n = self.checked_len(i64::from(n), 1)?;
                self.take(n)?; // native encoding name, e.g. "UTF-8"
                Ok(())
            }
            other => Err(self.error(format!("unsupported serialization version {other}"))),
        }
    }

    /// Validates an element count against the bytes left, `min_elem_bytes` each.
    fn checked_len(&self, len: i64, min_elem_bytes: usize) -> Result<usize> {
        let len = usize::try_from(len).map_err(|_| self.error(format!("negative length {len}")))?;
        match len.checked_mul(min_elem_bytes) {
            Some(need) if need <= self.remaining() => Ok(len),
            _ => Err(self.error(format!(
                "length {len} needs at least {min_elem_bytes} bytes per element, only {} bytes left",
                self.remaining()
            ))),
        }
    }

    /// A vector length: one i32, or -1 followed by two i32 halves of a long length.
    fn vec_len(&mut self, min_elem_bytes: usize) -> Result<usize> {
        let len = self.i32()?;
        let len = match len {
            -1 => {
                let upper = i64::from(self.i32()?);
                let lower = i64::from(self.i32()?);
                if !(0..=i64::from(u32::MAX)).contains(&upper) || lower < 0 {
                    return Err(self.error("bad long-vector length"));
                }
                (upper << 32) | lower
            }
            n if n < -1 => return Err(self.error(format!("negative length {n}"))),
            n => i64::from(n),
        };
        self.checked_len(len, min_elem_bytes)
    }

    fn item(&mut self, depth: usize) -> Result<RValue> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH}")));
        }
        let flags = self.i32()? as u32;
        self.item_with_flags(flags, depth)
    }

    fn item_with_flags(&mut self, flags: u32, depth: usize) -> Result<RValue> {
        let kind = (flags & 0xFF) as u8;
        let has_attr = flags & HAS_ATTR_BIT != 0;
        let has_tag = flags & HAS_TAG_BIT != 0;
        let levels = flags >> 12;
        let _is_object = flags & IS_OBJECT_BIT != 0;
        match kind {
            NILVALUE_SXP | GLOBALENV_SXP | UNBOUNDVALUE_SXP | MISSINGARG_SXP | BASENAMESPACE_SXP | EMPTYENV_SXP
            | BASEENV_SXP => Ok(RValue::plain(RData::Null)),
            REFSXP => {
                let index = match flags >> 8 {
                    0 => self.i32()?,
                    packed => packed as i32,
                };
                usize::try_from(index)
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| self.refs.get(i))
                    .cloned()
                    .ok_or_else(|| self.error(format!("reference {index} not yet defined")))
            }
            PERSISTSXP | PACKAGESXP | NAMESPACESXP => {
                let names = self.string_vec(depth)?;
                let value = RValue::plain(RData::Strings(names));
                self.refs.push(value.clone());
                Ok(value)
            }
            SYMSXP => {
                let name = match self.item(depth + 1)?.data {
                    RData::Char(Some(name)) => name,
                    RData::Char(None) => "NA".to_owned(),
                    _ => return Err(self.error("symbol name is not a CHARSXP")),
                };
                let value = RValue::plain(RData::Symbol(name));
                self.refs.push(value.clone());
                Ok(value)
            }
            ENVSXP => {
                let _locked = self.i32()?;
                let value = RValue::plain(RData::Environment);
                self.refs.push(value.clone());
                for _ in 0..4 {
                    // enclosure, frame, hash table, attributes
                    self.item(depth + 1)?;
                }
                Ok(value)
            }
            LISTSXP | LANGSXP | CLOSXP | PROMSXP | DOTSXP | ATTRLISTSXP | ATTRLANGSXP => self.pairlist(flags, depth),
            ALTREP_SXP => self.altrep(depth),
            BCODESXP => Err(self.error("byte code (BCODESXP) is not supported")),
            _ => {
                let data = self.vector_body(kind, levels, depth)?;
                let attributes = if has_attr { self.attributes(depth)? } else { Vec::new() };
                if has_tag && kind != CHARSXP {
                    return Err(self.error(format!("unexpected tag bit on type {kind}")));
                }
                Ok(RValue { data, attributes })
            }
        }
    }

    /// Bodies of the "short block" types, which all read their attributes afterwards.
    fn vector_body(&mut self, kind: u8, levels: u32, depth: usize) -> Result<RData> {
        Ok(match kind {
            CHARSXP => {
                let len = self.i32()?;
                if len == -1 {
                    RData::Char(None)
                } else {
                    let len = self.checked_len(i64::from(len), 1)?;
                    RData::Char(Some(self.char_bytes(len, levels)?))
                }
            }
            LGLSXP | INTSXP => {
                let n = self.vec_len(4)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(self.i32()?);
                }
                if kind == LGLSXP {
                    RData::Logical(values)
                } else {
                    RData::Integer(values)
                }
            }
            REALSXP => {
                let n = self.vec_len(8)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(self.f64()?);
                }
                RData::Real(values)
            }
            CPLXSXP => {
                let n = self.vec_len(16)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push((self.f64()?, self.f64()?));
                }
                RData::Complex(values)
            }
            RAWSXP => {
                let n = self.vec_len(1)?;
                RData::Raw(self.take(n)?.to_vec())
            }
            STRSXP => {
                // Each element is at least a flags word and a length word.
                let n = self.vec_len(8)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    match self.item(depth + 1)?.data {
                        RData::Char(s) => values.push(s),
                        _ => return Err(self.error("character vector element is not a CHARSXP")),
                    }
                }
                RData::Strings(values)
            }
            VECSXP | EXPRSXP => {
                let n = self.vec_len(4)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(self.item(depth + 1)?);
                }
                RData::List(values)
            }
            S4SXP => RData::Opaque(kind),
            SPECIALSXP | BUILTINSXP => {
                let n = self.vec_len(1)?;
                self.take(n)?; // primitive's name
                RData::Opaque(kind)
            }
            EXTPTRSXP => {
                self.refs.push(RValue::plain(RData::Opaque(kind)));
                self.item(depth + 1)?; // protected value
                self.item(depth + 1)?; // tag
                RData::Opaque(kind)
            }
            WEAKREFSXP => {
                self.refs.push(RValue::plain(RData::Opaque(kind)));
                RData::Opaque(kind)
            }
            NILSXP => RData::Null,
            other => return Err(self.error(format!("unsupported R type code {other}"))),
        })
    }

    fn char_bytes(&mut self, len: usize, levels: u32) -> Result<String> {
        let start = self.pos;
        let bytes = self.take(len)?;
        if levels & LATIN1_MASK != 0 {
            return Ok(bytes.iter().map(|&b| char::from(b)).collect());
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => {
                self.pos = start + e.valid_up_to();
                Err(self.error("string is not valid UTF-8"))
            }
        }
    }

    /// `InStringVec`: a zero word, a count, then that many items (CHARSXPs).
    fn string_vec(&mut self, depth: usize) -> Result<Vec<Option<String>>> {
        if self.i32()? != 0 {
            return Err(self.error("names in persistent string vector not supported"));
        }
        let n = self.vec_len(8)?;
        let mut names = Vec::with_capacity(n);
        for _ in 0..n {
            match self.item(depth + 1)?.data {
                RData::Char(s) => names.push(s),
                _ => return Err(self.error("string vector element is not a CHARSXP")),
            }
        }
        Ok(names)
    }

    /// An attribute pairlist item, as (name, value) pairs.
    fn attributes(&mut self, depth: usize) -> Result<Vec<(String, RValue)>> {
        match self.item(depth + 1)?.data {
            RData::Pairlist(nodes) => {
                Ok(nodes.into_iter().map(|(tag, value)| (tag.unwrap_or_default(), value)).collect())
            }
            RData::Null => Ok(Vec::new()),
            _ => Err(self.error("attributes are not a pairlist")),
        }
    }

    /// Pairlist-like nodes: [attributes] [tag] car, then the cdr, read iteratively so long
    /// lists cannot exhaust the stack.
    fn pairlist(&mut self, first_flags: u32, depth: usize) -> Result<RValue> {
        let mut nodes = Vec::new();
        let mut attributes = Vec::new();
        let mut flags = first_flags;
        loop {
            let kind = (flags & 0xFF) as u8;
            let has_attr = flags & HAS_ATTR_BIT != 0 || kind == ATTRLISTSXP || kind == ATTRLANGSXP;
            if has_attr {
                let node_attributes = self.attributes(depth)?;
                if nodes.is_empty() {
                    attributes = node_attributes;
                }
            }
            let tag = if flags & HAS_TAG_BIT != 0 {
                match self.item(depth + 1)?.data {
                    RData::Symbol(name) => Some(name),
                    RData::Char(name) => name,
                    RData::Null => None,
                    _ => return Err(self.error("pairlist tag is not a symbol")),
                }
            } else {
                None
            };
            let car = self.item(depth + 1)?;
            nodes.push((tag, car));
            let next = self.i32()? as u32;
            let next_kind = (next & 0xFF) as u8;
            match next_kind {
                LISTSXP | LANGSXP | CLOSXP | PROMSXP | DOTSXP | ATTRLISTSXP | ATTRLANGSXP => {
                    flags = next;
                }
                NILVALUE_SXP => break,
                _ => {
                    // A dotted pair: keep the final cdr as an untagged node.
                    let tail = self.item_with_flags(next, depth + 1)?;
                    nodes.push((None, tail));
                    break;
                }
            }
        }
        Ok(RValue { data: RData::Pairlist(nodes), attributes })
    }

    /// ALTREP objects: class info, state, attributes. The common wrappers are unwrapped and
    /// compact integer sequences expanded; anything else is kept opaque.
    fn altrep(&mut self, depth: usize) -> Result<RValue> {
        let info = self.item(depth + 1)?;
        let state = self.item(depth + 1)?;
        let attr_item = self.item(depth + 1)?;
        let attributes = match attr_item.data {
            RData::Pairlist(nodes) => nodes.into_iter().map(|(tag, value)| (tag.unwrap_or_default(), value)).collect(),
            _ => Vec::new(),
        };
        let class = match &info.data {
            RData::Pairlist(nodes) => match nodes.first().map(|(_, v)| &v.data) {
                Some(RData::Symbol(name)) => name.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let data = if class.starts_with("wrap_") {
            match state.data {
                RData::List(mut items) if !items.is_empty() => items.swap_remove(0).data,
                _ => return Err(self.error("malformed ALTREP wrapper state")),
            }
        } else if class == "compact_intseq" {
            match state.data {
                RData::Real(v) if v.len() == 3 => self.expand_intseq(v[0], v[1], v[2])?,
                _ => return Err(self.error("malformed compact_intseq state")),
            }
        } else {
            RData::Opaque(ALTREP_SXP)
        };
        Ok(RValue { data, attributes })
    }

    fn expand_intseq(&self, len: f64, start: f64, step: f64) -> Result<RData> {
        // Expansion is not backed by input bytes, so cap it separately.
        const MAX_EXPANDED: f64 = 1e8;
        if !(0.0..=MAX_EXPANDED).contains(&len) || !start.is_finite() || !step.is_finite() {
            return Err(self.error(format!("compact_intseq length {len} out of range")));
        }
        let values = (0..len as i64).map(|i| (start + step * i as f64) as i32).collect();
        Ok(RData::Integer(values))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds XDR streams by hand for the tests.
    #[derive(Default)]
    pub(crate) struct Xdr(pub Vec<u8>);

    impl Xdr {
        pub(crate) fn header_v3() -> Self {
            let mut x = Xdr(b"X\n".to_vec());
            x.int(3).int(0x0004_0201).int(0x0003_0500);
            x.int(5);
            x.0.extend_from_slice(b"UTF-8");
            x
        }
        pub(crate) fn int(&mut self, v: i32) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub(crate) fn charsxp(&mut self, s: Option<&str>, levels: u32) -> &mut Self {
            self.int((CHARSXP as u32 | (levels << 12)) as i32);
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i32);
                    self.0.extend_from_slice(s.as_bytes());
                    self
                }
            }
        }
        pub(crate) fn strsxp(&mut self, items: &[Option<&str>]) -> &mut Self {
            self.int(STRSXP as i32).int(items.len() as i32);
            for item in items {
                let levels = match item {
                    Some(s) if !s.is_ascii() => 1 << 3, // UTF8_MASK
                    Some(_) => 1 << 6,                  // ASCII_MASK
                    None => 0,
                };
                self.charsxp(*item, levels);
            }
            self
        }
    }

    fn three_strings() -> Vec<u8> {
        let mut x = Xdr::header_v3();
        x.strsxp(&[Some("It is a truth"), None, Some("Élise — naïve")]);
        x.0
    }

    #[test]
    fn reads_strsxp_with_na_and_utf8() {
        let value = parse_serialized(&three_strings(), "test").unwrap();
        assert_eq!(
            value.data,
            RData::Strings(vec![Some("It is a truth".to_owned()), None, Some("Élise — naïve".to_owned())])
        );
        assert!(value.attributes.is_empty());
    }

    #[test]
    fn reads_latin1_strings() {
        let mut x = Xdr::header_v3();
        x.int(STRSXP as i32).int(1);
        x.int((CHARSXP as u32 | (LATIN1_MASK << 12)) as i32).int(1);
        x.0.push(0xE9);
        let value = parse_serialized(&x.0, "test").unwrap();
        assert_eq!(value.data, RData::Strings(vec![Some("é".to_owned())]));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = three_strings();
        for end in 0..bytes.len() {
            let result = parse_serialized(&bytes[..end], "test");
            assert!(result.is_err(), "prefix of {end} bytes parsed");
        }
    }

    #[test]
    fn absurd_lengths_are_errors() {
        for len in [i32::MAX, 1 << 20, -2, -7] {
            let mut x = Xdr::header_v3();
            x.int(STRSXP as i32).int(len);
            assert!(parse_serialized(&x.0, "test").is_err(), "length {len}");
            let mut x = Xdr::header_v3();
            x.int(REALSXP as i32).int(len);
            assert!(parse_serialized(&x.0, "test").is_err(), "length {len}");
            let mut x = Xdr::header_v3();
            x.int(CHARSXP as i32).int(len);
            assert!(parse_serialized(&x.0, "test").is_err(), "length {len}");
        }
        // Long-vector length marker with a huge value.
        let mut x = Xdr::header_v3();
        x.int(INTSXP as i32).int(-1).int(0x7FFF_FFFF).int(0);
        assert!(parse_serialized(&x.0, "test").is_err());
        // Header's encoding-name length.
        let mut x = Xdr(b"X\n".to_vec());
        x.int(3).int(0).int(0).int(i32::MAX);
        assert!(parse_serialized(&x.0, "test").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut x = Xdr::header_v3();
        for _ in 0..10_000 {
            x.int(VECSXP as i32).int(1);
        }
        x.int(NILVALUE_SXP as i32);
        assert!(parse_serialized(&x.0, "test").is_err());
    }

    #[test]
    fn bad_references_and_formats_are_errors() {
        let mut x = Xdr::header_v3();
        x.int(REFSXP as i32 | (5 << 8));
        assert!(parse_serialized(&x.0, "test").is_err());
        assert!(parse_serialized(b"A\n1\n", "test").is_err());
        let mut x = Xdr(b"X\n".to_vec());
        x.int(9).int(0).int(0);
        assert!(parse_serialized(&x.0, "test").is_err());
    }

    #[test]
    fn reads_named_list_with_symbol_references() {
        // list(a = 1L, b = "x") with names attribute, the "names" symbol written once.
        let mut x = Xdr::header_v3();
        x.int(VECSXP as i32 | HAS_ATTR_BIT as i32).int(2);
        x.int(INTSXP as i32).int(1).int(1);
        x.strsxp(&[Some("x")]);
        // attributes: pairlist(names = c("a", "b"))
        x.int(LISTSXP as i32 | HAS_TAG_BIT as i32);
        x.int(SYMSXP as i32).charsxp(Some("names"), 1 << 6);
        x.strsxp(&[Some("a"), Some("b")]);
        x.int(NILVALUE_SXP as i32);
        let value = parse_serialized(&x.0, "test").unwrap();
        assert_eq!(value.list_element("a").map(|v| &v.data), Some(&RData::Integer(vec![1])));
        assert_eq!(value.list_element("b").map(|v| &v.data), Some(&RData::Strings(vec![Some("x".to_owned())])));

        // A second symbol use through a reference (index 1 packed in the flags).
        let mut y = Xdr::header_v3();
        y.int(LISTSXP as i32 | HAS_TAG_BIT as i32);
        y.int(SYMSXP as i32).charsxp(Some("names"), 0);
        y.int(LGLSXP as i32).int(1).int(1);
        y.int(LISTSXP as i32 | HAS_TAG_BIT as i32);
        y.int(REFSXP as i32 | (1 << 8));
        y.int(LGLSXP as i32).int(1).int(0);
        y.int(NILVALUE_SXP as i32);
        let value = parse_serialized(&y.0, "test").unwrap();
        let RData::Pairlist(nodes) = value.data else {
            panic!("not a pairlist");
        };
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].0.as_deref(), Some("names"));
    }
}
