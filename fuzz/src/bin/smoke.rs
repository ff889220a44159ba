//! A stable-Rust fuzz driver: runs both targets over seeded random and mutated inputs for a
//! fixed number of iterations. It has no coverage feedback (that needs cargo-fuzz on nightly)
//! but runs everywhere, deterministically.
//!
//! `cargo run --release --manifest-path fuzz/Cargo.toml --bin smoke -- [ITERATIONS] [SEED]`

use std::time::Instant;

use sturnus_fuzz::{EndpointHarness, packet_decode};
use sturnus_netem::Rng;

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let mut corpus: Vec<Vec<u8>> =
        vec![vec![0; 4], vec![0x81; 64], vec![0, 1, 0, 0, 6, 0x0B, 1, 0]];
    let mut harness = EndpointHarness::new(start);
    for i in 0..iterations {
        let input: Vec<u8> = if rng.chance(0.5) {
            let len = rng.below(300) as usize;
            (0..len).map(|_| rng.next_u64() as u8).collect()
        } else {
            let mut d = corpus[rng.below(corpus.len() as u64) as usize].clone();
            for _ in 0..=rng.below(6) {
                match rng.below(3) {
                    0 if !d.is_empty() => {
                        let at = rng.below(d.len() as u64) as usize;
                        d[at] ^= 1 << rng.below(8);
                    }
                    1 => d.push(rng.next_u64() as u8),
                    _ => d.truncate(rng.below(d.len() as u64 + 1) as usize),
                }
            }
            d
        };
        packet_decode(&input);
        harness.feed(&input);
        if i % 64 == 0 && corpus.len() < 1024 {
            corpus.push(input);
        }
        if i % 50_000 == 0 {
            // A fresh connection now and then, so state does not drift too far.
            harness = EndpointHarness::new(start);
        }
    }
    println!(
        "smoke: {iterations} inputs through packet_decode and endpoint_input, no panic (seed {seed})"
    );
}
