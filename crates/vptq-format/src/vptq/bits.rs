//! Index bit packing of the VPTQ layout (vptq-spec.md §2.3): one row of `n` merged indices
//! `m_g = (res_g << main_bits) | main_g`, each `T = main_bits + res_bits` wide, concatenated into a little-endian
//! bit stream (bit `t` of `m_g` at stream position `g·T + t`), zero-padded to whole 32-bit words; word `w` holds
//! stream bits `[32w, 32w + 32)`, stream bit `32w + u` at bit `u`. Elements straddle word boundaries freely.
//!
//! Pure functions on slices; no IO, no dependencies. The residual is masked with its own width (the reference
//! Python unpacker masks it with the main width, which truncates residuals wider than the main index).

/// Largest width of one main or residual index.
pub const MAX_INDEX_BITS: u32 = 16;

/// Number of 32-bit words holding `n` elements of `total_bits` bits each: `ceil(n · total_bits / 32)`.
pub fn words_for(n: usize, total_bits: u32) -> usize {
    (n * total_bits as usize).div_ceil(32)
}

/// Low `bits` bits set (`bits` in `0..=32`).
fn mask(bits: u32) -> u64 {
    (1u64 << bits) - 1
}

/// Packs one row of main indices (and residual indices, if any) into the bit stream of §2.3.
///
/// `main` and `res` are `[n]`; returns `[words_for(n, main_bits + res_bits)]` words.
///
/// # Panics
/// If `main_bits` is not in `1..=16`, `res_bits` not in `0..=16`, `res` is given with `res_bits == 0` (or absent
/// with `res_bits > 0`), the lengths differ, or an index does not fit its width. These are caller bugs: packing
/// never sees file contents.
pub fn pack_indices(main: &[u32], res: Option<&[u32]>, main_bits: u32, res_bits: u32) -> Vec<u32> {
    assert!((1..=MAX_INDEX_BITS).contains(&main_bits), "pack_indices: main_bits {main_bits} not in 1..=16");
    assert!(res_bits <= MAX_INDEX_BITS, "pack_indices: res_bits {res_bits} > 16");
    assert_eq!(res.is_some(), res_bits > 0, "pack_indices: residual indices given iff res_bits > 0");
    if let Some(r) = res {
        assert_eq!(r.len(), main.len(), "pack_indices: main and residual lengths differ");
    }
    let total_bits = main_bits + res_bits;
    let mut words = vec![0u32; words_for(main.len(), total_bits)]; // [P] the packed row
    for (g, &m) in main.iter().enumerate() {
        assert!(u64::from(m) <= mask(main_bits), "pack_indices: main index {m} does not fit {main_bits} bits");
        let r = res.map_or(0, |r| r[g]);
        assert!(u64::from(r) <= mask(res_bits), "pack_indices: residual index {r} does not fit {res_bits} bits");
        // Residual in the high bits of the merged value (§2.3 step 1); T ≤ 32 so a u64 holds it shifted.
        let merged = (u64::from(r) << main_bits) | u64::from(m);
        let start = g * total_bits as usize;
        let (w, o) = (start / 32, start % 32);
        let shifted = merged << o; // at most 32 + 31 bits: fits u64
        words[w] |= shifted as u32;
        if o + total_bits as usize > 32 {
            words[w + 1] |= (shifted >> 32) as u32;
        }
    }
    words
}

/// Reads element `g` (a merged `total_bits`-wide value) of a packed row.
///
/// `total_bits` is in `1..=32`; the main index is the low `main_bits` bits, the residual the bits above.
///
/// # Panics
/// If `words` is shorter than the element requires (callers check `words.len()` against [`words_for`] once per
/// tensor, so this is an internal invariant).
#[inline]
pub fn read_index(words: &[u32], g: usize, total_bits: u32) -> u32 {
    let start = g * total_bits as usize;
    let (w, o) = (start / 32, start % 32);
    let lo = u64::from(words[w]);
    // The element straddles into the next word only when it ends past bit 32 of this one; the row was padded to
    // whole words, so that next word then exists.
    let hi = if o + total_bits as usize > 32 { u64::from(words[w + 1]) } else { 0 };
    (((hi << 32 | lo) >> o) & mask(total_bits)) as u32
}

/// Unpacks `n` elements of a packed row into main indices `[n]` and residual indices `[n]` (empty when
/// `res_bits == 0`).
///
/// # Panics
/// If `main_bits` is not in `1..=16`, `res_bits` not in `0..=16`, or `words` holds fewer than
/// `words_for(n, main_bits + res_bits)` words.
pub fn unpack_indices(words: &[u32], n: usize, main_bits: u32, res_bits: u32) -> (Vec<u32>, Vec<u32>) {
    assert!((1..=MAX_INDEX_BITS).contains(&main_bits), "unpack_indices: main_bits {main_bits} not in 1..=16");
    assert!(res_bits <= MAX_INDEX_BITS, "unpack_indices: res_bits {res_bits} > 16");
    let total_bits = main_bits + res_bits;
    assert!(words.len() >= words_for(n, total_bits), "unpack_indices: {} words for {n} elements", words.len());
    let mut main = Vec::with_capacity(n); // [n]
    let mut res = Vec::with_capacity(if res_bits > 0 { n } else { 0 }); // [n] or empty
    for g in 0..n {
        let merged = read_index(words, g, total_bits);
        main.push(merged & mask(main_bits) as u32);
        if res_bits > 0 {
            res.push((merged >> main_bits) & mask(res_bits) as u32);
        }
    }
    (main, res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_worked_example() {
        // vptq-spec.md §2.3: T = 24 (b = 16, r = 8).
        let words = pack_indices(&[0x1234, 0xABCD], Some(&[0x56, 0xEF]), 16, 8);
        assert_eq!(words, vec![0xCD56_1234, 0x0000_EFAB]);
        let (main, res) = unpack_indices(&words, 2, 16, 8);
        assert_eq!((main, res), (vec![0x1234, 0xABCD], vec![0x56, 0xEF]));
        assert_eq!(read_index(&words, 1, 24), 0xEF_ABCD);
    }

    #[test]
    fn sixteen_and_thirty_two_bits_are_plain_arrays() {
        assert_eq!(pack_indices(&[1, 0xFFFF, 7], None, 16, 0), vec![0xFFFF_0001, 7]);
        assert_eq!(pack_indices(&[0xFFFF, 2], Some(&[0xFFFF, 3]), 16, 16), vec![0xFFFF_FFFF, 0x0003_0002]);
    }

    #[test]
    fn residual_wider_than_main_is_not_truncated() {
        // The reference Python unpacker would mask this residual with 4 bits.
        let words = pack_indices(&[5, 9], Some(&[0x1FF, 0x0AB]), 4, 9);
        assert_eq!(unpack_indices(&words, 2, 4, 9), (vec![5, 9], vec![0x1FF, 0x0AB]));
    }

    #[test]
    fn empty_row_is_empty() {
        assert!(pack_indices(&[], None, 3, 0).is_empty());
        assert_eq!(unpack_indices(&[], 0, 3, 0), (vec![], vec![]));
    }

    /// Bit-by-bit stream writer straight from the definition, independent of `pack_indices`' word arithmetic.
    fn pack_bitwise(merged: &[u64], total_bits: u32) -> Vec<u32> {
        let mut words = vec![0u32; words_for(merged.len(), total_bits)];
        for (g, &m) in merged.iter().enumerate() {
            for t in 0..total_bits as usize {
                if (m >> t) & 1 == 1 {
                    let pos = g * total_bits as usize + t;
                    words[pos / 32] |= 1 << (pos % 32);
                }
            }
        }
        words
    }

    fn case() -> impl Strategy<Value = (u32, u32, Vec<(u32, u32)>)> {
        (1u32..=16, 0u32..=16).prop_flat_map(|(b, r)| {
            let elem = (0u32..(1u32 << b), 0u32..(1u32 << r));
            (Just(b), Just(r), proptest::collection::vec(elem, 0..70))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn round_trip_every_width((b, r, elems) in case()) {
            let main: Vec<u32> = elems.iter().map(|e| e.0).collect();
            let res: Vec<u32> = elems.iter().map(|e| e.1).collect();
            let words = pack_indices(&main, (r > 0).then_some(&res[..]), b, r);
            prop_assert_eq!(words.len(), words_for(main.len(), b + r));
            let merged: Vec<u64> = elems.iter().map(|&(m, rr)| (u64::from(rr) << b) | u64::from(m)).collect();
            prop_assert_eq!(&words, &pack_bitwise(&merged, b + r));
            let (um, ur) = unpack_indices(&words, main.len(), b, r);
            prop_assert_eq!(um, main);
            if r > 0 { prop_assert_eq!(ur, res); } else { prop_assert!(ur.is_empty()); }
            for (g, &m) in merged.iter().enumerate() {
                prop_assert_eq!(u64::from(read_index(&words, g, b + r)), m);
            }
        }
    }

    #[test]
    fn every_width_pair_round_trips_exhaustively_at_the_extremes() {
        // Complements the proptest: all 16 × 17 width pairs with all-ones and alternating values, 33 elements
        // so every start offset within a word is hit for odd widths.
        for b in 1..=16u32 {
            for r in 0..=16u32 {
                let main: Vec<u32> = (0..33u32).map(|g| if g % 2 == 0 { (1 << b) - 1 } else { g % (1 << b) }).collect();
                let res: Vec<u32> = (0..33u32).map(|g| if g % 3 == 0 { (1 << r) - 1 } else { g % (1 << r) }).collect();
                let words = pack_indices(&main, (r > 0).then_some(&res[..]), b, r);
                let (um, ur) = unpack_indices(&words, 33, b, r);
                assert_eq!(um, main, "b={b} r={r}");
                assert_eq!(ur, if r > 0 { res } else { vec![] }, "b={b} r={r}");
            }
        }
    }
}
