//! A stable-Rust fuzz driver: runs every target over seeded random and mutated inputs. It has
//! no coverage feedback (that needs cargo-fuzz on nightly) but runs everywhere,
//! deterministically for a given seed, and `cargo xtask ci` runs it.
//!
//! `cargo run --release --manifest-path fuzz/Cargo.toml --bin smoke -- [ITERATIONS] [SEED] [SECONDS] [TARGET]`
//!
//! Each target gets `ITERATIONS` inputs (default 200,000), or its share of `SECONDS` (default:
//! no limit) if that runs out first. A panic in a target is reported with the input that
//! caused it, which is written under `fuzz/artifacts/<target>/` (where `cargo fuzz run <target>
//! <file>` replays it), and the driver exits with a failure.
//!
//! It also fails when the inputs stop reaching deep: for `endpoint_input`, unless at least
//! [`MIN_ACCEPTED_PERCENT`](sturnus_fuzz::MIN_ACCEPTED_PERCENT) of the datagrams from the
//! connected client's address were accepted by the server's connection over the whole run
//! ([`EndpointCounts::check_depth`]), as happened when data packets gained a tag the fuzzer
//! cannot forge.
//!
//! A fourth argument, `TARGET`, runs that target alone (with all of `SECONDS`).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "a command-line driver that reports progress and keeps to a time budget"
)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sturnus_fuzz::message::MessageHarness;
use sturnus_fuzz::netcode::NetcodeHarness;
use sturnus_fuzz::object::ObjectHarness;
use sturnus_fuzz::relay::RelayHarness;
use sturnus_fuzz::{EndpointCounts, EndpointHarness, packet_decode};
use sturnus_netem::Rng;

/// One target: its name, its starting corpus, and a body that may keep state between inputs.
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    /// Inputs between two fresh harnesses, so state does not drift too far.
    reset_every: u64,
    make: fn() -> Box<dyn Harness>,
}

/// A target's state between inputs.
trait Harness {
    fn feed(&mut self, data: &[u8]);
    /// What it counted, to show how deep the inputs reached.
    fn report(&self) -> String {
        String::new()
    }
    /// The endpoint harness's counts, summed over a run for its depth check.
    fn endpoint_counts(&self) -> Option<EndpointCounts> {
        None
    }
}

/// Datagrams from the client's address a run needs before its depth is checked.
const MIN_DEPTH_SAMPLE: u64 = 1000;

struct Endpoint(EndpointHarness);

impl Harness for Endpoint {
    fn feed(&mut self, data: &[u8]) {
        packet_decode(data);
        self.0.feed(data);
    }
    fn endpoint_counts(&self) -> Option<EndpointCounts> {
        Some(self.0.counts())
    }
}

impl Harness for MessageHarness {
    fn feed(&mut self, data: &[u8]) {
        MessageHarness::feed(self, data);
    }
    fn report(&self) -> String {
        MessageHarness::report(self)
    }
}

impl Harness for RelayHarness {
    fn feed(&mut self, data: &[u8]) {
        RelayHarness::feed(self, data);
    }
    fn report(&self) -> String {
        RelayHarness::report(self)
    }
}

impl Harness for NetcodeHarness {
    fn feed(&mut self, data: &[u8]) {
        NetcodeHarness::feed(self, data);
    }
    fn report(&self) -> String {
        NetcodeHarness::report(self)
    }
}

impl Harness for ObjectHarness {
    fn feed(&mut self, data: &[u8]) {
        ObjectHarness::feed(self, data);
    }
    fn report(&self) -> String {
        ObjectHarness::report(self)
    }
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "endpoint_input",
            seeds: EndpointHarness::seeds(),
            reset_every: 50_000,
            make: || Box::new(Endpoint(EndpointHarness::new(Instant::now()))),
        },
        Target {
            name: "message_decode",
            seeds: MessageHarness::seeds(),
            reset_every: 5_000,
            make: || Box::new(MessageHarness::new()),
        },
        Target {
            name: "object_wire",
            seeds: ObjectHarness::seeds(),
            reset_every: 2_000,
            make: || Box::new(ObjectHarness::new()),
        },
        Target {
            name: "netcode_tokens",
            seeds: NetcodeHarness::seeds(),
            reset_every: 100_000,
            make: || Box::new(NetcodeHarness::new()),
        },
        Target {
            name: "relay_input",
            seeds: RelayHarness::seeds(),
            reset_every: 2_000,
            make: || Box::new(RelayHarness::new()),
        },
    ]
}

/// The next input: random bytes, or a corpus entry mutated (bit flips, interesting bytes,
/// insertions, truncation, splicing with another entry).
fn next_input(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    if rng.chance(0.25) {
        let len = rng.below(300) as usize;
        return (0..len).map(|_| rng.next_u64() as u8).collect();
    }
    let mut d = corpus[rng.below(corpus.len() as u64) as usize].clone();
    for _ in 0..=rng.below(6) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let at = rng.below(d.len() as u64) as usize;
                d[at] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let at = rng.below(d.len() as u64) as usize;
                d[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5) as usize];
            }
            2 => {
                let at = rng.below(d.len() as u64 + 1) as usize;
                d.insert(at, rng.next_u64() as u8);
            }
            3 => d.truncate(rng.below(d.len() as u64 + 1) as usize),
            4 => {
                let other = &corpus[rng.below(corpus.len() as u64) as usize];
                d.extend_from_slice(other);
            }
            _ => d.push(rng.next_u64() as u8),
        }
    }
    d
}

/// Runs `target`; how many inputs it ran and what was counted, or `Err` with a description if
/// it panicked or its inputs did not reach deep enough.
fn run(
    target: &Target,
    iterations: u64,
    seed: u64,
    budget: Duration,
) -> Result<(u64, String), String> {
    let mut rng = Rng::new(seed);
    let mut corpus = target.seeds.clone();
    corpus.push(Vec::new());
    let start = Instant::now();
    let mut body = (target.make)();
    let mut totals: Option<EndpointCounts> = None;
    let mut tally = |body: &dyn Harness| {
        if let Some(counts) = body.endpoint_counts() {
            totals.get_or_insert_default().add(&counts);
        }
    };
    let mut done = iterations;
    for i in 0..iterations {
        if i % 256 == 0 && start.elapsed() >= budget {
            done = i;
            break;
        }
        if i > 0 && i % target.reset_every == 0 {
            tally(&*body);
            body = (target.make)();
        }
        let input = next_input(&mut rng, &corpus);
        if catch_unwind(AssertUnwindSafe(|| body.feed(&input))).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            let dir = format!("{}/artifacts/{}", env!("CARGO_MANIFEST_DIR"), target.name);
            let file = format!("{dir}/smoke-crash-seed{seed}-input{i}");
            let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &input));
            let saved = match saved {
                Ok(()) => format!("saved to {file}"),
                Err(err) => format!("not saved: {err}"),
            };
            return Err(format!(
                "{}: input {i} of seed {seed} panicked (state from up to {} earlier inputs may \
                 matter); input ({saved}): {hex}",
                target.name,
                i % target.reset_every
            ));
        }
        if i % 64 == 0 && corpus.len() < 1024 {
            corpus.push(input);
        }
    }
    tally(&*body);
    let mut report = body.report();
    if !report.is_empty() {
        report = format!("the last harness counted {report}");
    }
    if let Some(totals) = totals {
        report = format!("the run counted {totals}");
        if totals.from_client >= MIN_DEPTH_SAMPLE {
            totals
                .check_depth()
                .map_err(|err| format!("{}: too shallow (seed {seed}): {err}", target.name))?;
        } else {
            report.push_str(" (too few to check the depth)");
        }
    }
    Ok((done, report))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let seconds: Option<u64> = args.next().and_then(|a| a.parse().ok());
    let only = args.next();
    let mut targets = targets();
    if let Some(only) = &only {
        targets.retain(|t| t.name == only);
        if targets.is_empty() {
            eprintln!("smoke: no target named {only}");
            return ExitCode::FAILURE;
        }
    }
    let budget = seconds.map_or(Duration::MAX, |s| {
        Duration::from_secs(s) / u32::try_from(targets.len()).unwrap_or(1)
    });
    let mut failed = false;
    for target in &targets {
        let start = Instant::now();
        match run(target, iterations, seed, budget) {
            Ok((done, report)) => {
                println!(
                    "smoke: {}: {done} inputs in {:.1} s, no panic (seed {seed})",
                    target.name,
                    start.elapsed().as_secs_f64()
                );
                if !report.is_empty() {
                    println!("smoke:   {report}");
                }
            }
            Err(report) => {
                eprintln!("smoke: FAILED {report}");
                failed = true;
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
