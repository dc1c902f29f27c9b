//! Seeded test data shared by the unit tests.

use crate::algo::rng::SplitMix64;

/// Random SPD matrix `AᵀA/r + 10⁻³·I [n, n]` (r = n + 8 Gaussian rows): well-conditioned enough, not diagonal.
pub(crate) fn random_spd(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let r = n + 8;
    let a: Vec<f64> = (0..r * n).map(|_| rng.normal()).collect();
    let mut h = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            h[i * n + j] = (0..r).map(|t| a[t * n + i] * a[t * n + j]).sum::<f64>() / r as f64;
        }
        h[i * n + i] += 1e-3;
    }
    h
}

/// Hessian of strongly correlated inputs `[n, n]`: `x = z·B + 0.1·ε` with a shared low-rank factor, so
/// error feedback has something to exploit; positive definite.
pub(crate) fn correlated_hessian(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let rank = (n / 4).max(2);
    let rows = 4 * n;
    // b [rank, n] mixing matrix; x [rows, n]
    let b: Vec<f64> = (0..rank * n).map(|_| rng.normal()).collect();
    let mut x = vec![0f64; rows * n];
    for r in 0..rows {
        let z: Vec<f64> = (0..rank).map(|_| rng.normal()).collect();
        for j in 0..n {
            let scale = 1.0 + 3.0 * (j % 7) as f64 / 7.0;
            x[r * n + j] = scale * ((0..rank).map(|t| z[t] * b[t * n + j]).sum::<f64>() + 0.1 * rng.normal());
        }
    }
    let mut h = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            h[i * n + j] = (0..rows).map(|r| x[r * n + i] * x[r * n + j]).sum::<f64>() / rows as f64;
        }
    }
    h
}

/// `len` standard normal values as f32.
pub(crate) fn normal_f32(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| rng.normal() as f32).collect()
}
