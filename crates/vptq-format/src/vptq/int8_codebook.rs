//! Int8 storage of main codebooks on their power-of-two grid (an extension of the HF VPTQ layout, written only
//! on request): `<module>.centroids.qweight` (I8 `[G, k·v]`) and `<module>.centroids.scales` (F32 `[G, v]`, the
//! step of each group's lane) replace `<module>.centroids.weight`, whose absence makes loaders that do not know
//! the extension fail on a missing tensor instead of computing with wrong values. Entry `e`, lane `l` of group
//! `c` is `qweight[c][e·v + l] · scales[c][l]`; for a codebook on its grid this is exactly the f16/f32 value it
//! replaces, at half the f16 bytes.

use crate::hf::HalfOrFloat;

/// Suffix of the int8 values tensor.
pub const QWEIGHT_SUFFIX: &str = "centroids.qweight";
/// Suffix of the per-group, per-lane steps tensor.
pub const SCALES_SUFFIX: &str = "centroids.scales";

/// The int8 grid step of a codebook lane whose largest |entry| is `max_abs`: the smallest power of two with
/// `max_abs ≤ 127 · step` (1 for an all-zero or non-finite lane). Entries that are integer multiples of their
/// lane's step are exact in int8 with that step, and, because scaling by a power of two is exact in binary
/// floating point, int8 arithmetic scaled afterwards rounds exactly like the f32 values.
pub fn int8_grid_step(max_abs: f32) -> f32 {
    if !(max_abs > 0.0 && max_abs.is_finite()) {
        return 1.0;
    }
    let mut step = 2f32.powi((max_abs / 127.0).log2().ceil() as i32);
    // log2 rounding: settle on the smallest power of two that holds max_abs.
    while max_abs > 127.0 * step {
        step *= 2.0;
    }
    while max_abs <= 127.0 * step * 0.5 {
        step *= 0.5;
    }
    step
}

/// The steps `[G, v]` of a codebook `[G, k·v]` (`k·v` values per group).
pub fn grid_steps(values: &[f32], groups: usize, v: usize) -> Vec<f32> {
    let per_group = values.len() / groups.max(1);
    let mut steps = vec![1f32; groups * v];
    for (c, book) in values.chunks_exact(per_group.max(1)).enumerate().take(groups) {
        for l in 0..v {
            let max = book.iter().skip(l).step_by(v).fold(0f32, |m, x| m.max(x.abs()));
            steps[c * v + l] = int8_grid_step(max);
        }
    }
    steps
}

/// The codebook `[G, k·v]` as int8 values and steps `[G, v]`, if every entry is on its lane's grid.
pub fn to_int8(codebook: &HalfOrFloat, groups: usize, v: usize) -> Option<(Vec<i8>, Vec<f32>)> {
    let values: Vec<f32> = match codebook {
        HalfOrFloat::F32(x) => x.clone(),
        HalfOrFloat::F16(x) => x.iter().map(|h| h.to_f32()).collect(),
        HalfOrFloat::Bf16(x) => x.iter().map(|h| h.to_f32()).collect(),
    };
    if groups == 0 || v == 0 || !values.len().is_multiple_of(groups * v) {
        return None;
    }
    let steps = grid_steps(&values, groups, v);
    let per_group = values.len() / groups;
    let mut q = Vec::with_capacity(values.len());
    for (i, &x) in values.iter().enumerate() {
        let s = steps[(i / per_group) * v + i % v];
        let qi = x / s;
        if qi != qi.round() || qi.abs() > 127.0 {
            return None;
        }
        q.push(qi as i8);
    }
    Some((q, steps))
}

/// The codebook `[G, k·v]` from int8 values and steps `[G, v]` (lengths checked by the caller).
pub fn from_int8(q: &[i8], steps: &[f32], groups: usize, v: usize) -> Vec<f32> {
    let per_group = q.len() / groups.max(1);
    q.iter().enumerate().map(|(i, &x)| f32::from(x) * steps[(i / per_group) * v + i % v]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn grid_step_is_the_smallest_power_of_two_that_holds_the_lane() {
        for max in [1e-6f32, 3e-3, 0.0123, 0.5, 1.0, 127.0, 127.5, 254.0, 1e3, 7.77e4] {
            let s = int8_grid_step(max);
            assert_eq!(s, 2f32.powi(s.log2() as i32), "{max}: power of two");
            assert!(max <= 127.0 * s && max > 63.5 * s, "{max}: step {s}");
        }
        assert_eq!(int8_grid_step(0.0), 1.0);
        assert_eq!(int8_grid_step(f32::NAN), 1.0);
    }

    #[test]
    fn on_grid_codebooks_round_trip_exactly_and_others_are_refused() {
        // 2 groups × 3 entries × v = 2; steps 2^-3 (lane max 12.5) and 2^-6 etc.
        let vals: Vec<f32> = vec![0.5, -0.25, 12.5, 0.125, -3.0, 1.0, 0.0, 0.0, 0.75, -1.5, -0.375, 0.0];
        let cb = HalfOrFloat::F16(vals.iter().map(|&x| f16::from_f32(x)).collect());
        let (q, steps) = to_int8(&cb, 2, 2).unwrap();
        assert_eq!(steps.len(), 4);
        assert_eq!(from_int8(&q, &steps, 2, 2), vals);
        let mut off = vals.clone();
        off[2] = 12.4;
        assert!(to_int8(&HalfOrFloat::F32(off), 2, 2).is_none(), "12.4 is not a multiple of 2^-3");
        assert!(to_int8(&HalfOrFloat::F32(vals.clone()), 5, 2).is_none(), "lengths must divide");
    }
}
