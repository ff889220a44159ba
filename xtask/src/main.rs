//! Project automation. CI and humans run the same commands:
//!
//! - `cargo xtask ci`: formatting check, clippy with warnings denied, the tests (cargo-nextest
//!   when installed, else `cargo test`), the doc tests, the loom models, a bounded run of the
//!   stable fuzz smoke driver over every fuzz target, and rustdoc with warnings denied.
//! - `cargo xtask deny`: licence, advisory and source checks with cargo-deny, when installed.
//! - `cargo xtask loom`: the loom models of the background I/O thread (also part of `ci`).
//! - `cargo xtask bench`: every `sturnus-bench` workload, three runs each, with the raw-UDP
//!   baseline (see `benches/README.md`).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reports progress"
)]

use std::process::{Command, ExitCode};

/// One step of a task: a description and the command it runs.
struct Step {
    what: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const FMT: Step = Step {
    what: "formatting",
    program: "cargo",
    args: &["fmt", "--all", "--", "--check"],
    env: &[],
};
const CLIPPY: Step = Step {
    what: "lints",
    program: "cargo",
    args: &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"],
    env: &[],
};
const NEXTEST: Step = Step {
    what: "tests (nextest)",
    program: "cargo",
    args: &["nextest", "run", "--workspace", "--locked", "--no-fail-fast"],
    env: &[],
};
const CARGO_TEST: Step = Step {
    what: "tests (cargo test)",
    program: "cargo",
    args: &["test", "--workspace", "--locked", "--all-targets", "--no-fail-fast"],
    env: &[],
};
const DOCTEST: Step = Step {
    what: "doc tests",
    program: "cargo",
    args: &["test", "--workspace", "--locked", "--doc"],
    env: &[],
};
const DOC: Step = Step {
    what: "rustdoc",
    program: "cargo",
    args: &["doc", "--workspace", "--no-deps", "--locked"],
    env: &[("RUSTDOCFLAGS", "-D warnings")],
};

/// The loom models of the background I/O thread's handoff, in a target directory of their own
/// (`--cfg loom` changes every crate's build).
const LOOM: Step = Step {
    what: "loom models",
    program: "cargo",
    args: &["test", "-p", "sturnus-transport", "--lib", "--release", "--locked", "handoff"],
    env: &[("RUSTFLAGS", "--cfg loom"), ("CARGO_TARGET_DIR", "target/loom")],
};

/// The stable fuzz smoke driver over every target, bounded for CI: a million seeded inputs per
/// target or 60 s in all, whichever comes first (a few seconds of inputs on a 2-core machine;
/// the build is most of the step). A panic in any target fails it, and so do `endpoint_input`
/// inputs that stop reaching the record layer (see `EndpointCounts::check_depth` in `fuzz/`).
fn fuzz_smoke_ci() -> Result<(), String> {
    fuzz_smoke("1000000", "1", "60")
}

/// Runs the stable fuzz smoke driver: `inputs` per target, on `seed`, `seconds` at most in all.
fn fuzz_smoke(inputs: &str, seed: &str, seconds: &str) -> Result<(), String> {
    let args = [
        "run",
        "--release",
        "--locked",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--bin",
        "smoke",
        "--",
        inputs,
        seed,
        seconds,
    ];
    exec("fuzz smoke run", "cargo", &args, &[])
}

/// The cargo-fuzz targets (`fuzz/fuzz_targets`).
const FUZZ_TARGETS: &[&str] = &[
    "packet_decode",
    "endpoint_input",
    "message_decode",
    "object_wire",
    "netcode_tokens",
    "relay_input",
];

/// A short benchmark sweep: every workload once against its raw-UDP baseline.
const BENCH_WORKLOADS: &[&[&str]] = &[
    &["--workload", "throughput", "--qos", "reliable-sequenced"],
    &["--workload", "throughput", "--qos", "unreliable"],
    // Round-trip times drift between runs on a shared machine by more than the difference
    // measured: more, shorter alternations with the baseline.
    &["--workload", "latency", "--messages", "20000", "--repeat", "9"],
    &["--workload", "large"],
    &["--workload", "clients", "--clients", "1000", "--rate", "10", "--duration-s", "5"],
];

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci(),
        Some("deny") => deny(std::env::args().skip(2).collect()),
        Some("test") => test(),
        Some("fuzz") => fuzz(),
        Some("loom") => run(&LOOM),
        Some("bench") => bench(),
        Some("bench-services") => bench_services(std::env::args().skip(2).collect()),
        _ => {
            eprintln!("usage: cargo xtask <task>\n");
            eprintln!("tasks:");
            eprintln!(
                "  ci     fmt check, clippy -D warnings, tests, doc tests, loom, fuzz smoke, rustdoc -D warnings"
            );
            eprintln!("  test   the tests and doc tests only");
            eprintln!("  loom   the loom models of the background I/O thread's handoff");
            eprintln!(
                "  bench  every sturnus-bench workload once, with its raw-UDP baseline (JSON lines)"
            );
            eprintln!(
                "  bench-services [ARGS..]  the matchmaker's lobby mix and join race on the memory store and on a private Redis (extra ARGS go to sturnus-bench services)"
            );
            eprintln!(
                "  fuzz   the fuzz targets: cargo-fuzz on nightly when present, else the stable smoke driver"
            );
            eprintln!(
                "  deny [CHECK..]  cargo-deny checks: advisories, bans, licenses, sources (all by default)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn ci() -> Result<(), String> {
    run(&FMT)?;
    runtime_free()?;
    run(&CLIPPY)?;
    test()?;
    run(&LOOM)?;
    fuzz_smoke_ci()?;
    run(&DOC)
}

fn bench() -> Result<(), String> {
    exec(
        "build the bench tool",
        "cargo",
        &["build", "--release", "--locked", "-p", "sturnus-benches"],
        &[],
    )?;
    for workload in BENCH_WORKLOADS {
        let mut args = vec!["local"];
        args.extend_from_slice(workload);
        // Options given twice take the last value, so a workload may set its own repeat.
        args.splice(1..1, ["--baseline", "raw-udp", "--repeat", "3"]);
        exec("bench", "target/release/sturnus-bench", &args, &[])?;
    }
    Ok(())
}

/// The game-side crates: none may depend on an async runtime (only `sturnusd` may).
const GAME_SIDE: &[&str] = &[
    "sturnus",
    "sturnus-socket",
    "sturnus-netem",
    "sturnus-transport",
    "sturnus-message",
    "sturnus-object",
    "sturnus-netcode",
    "sturnus-discovery",
    "sturnus-lobby",
    "sturnus-relay",
];

/// Checks that no game-side crate pulls tokio in (normal dependencies, every feature).
fn runtime_free() -> Result<(), String> {
    println!("xtask: the game-side crates are runtime-free — cargo tree -e normal");
    for krate in GAME_SIDE {
        let out = Command::new("cargo")
            .args(["tree", "--locked", "-q", "-e", "normal", "--all-features", "--prefix", "none"])
            .args(["-p", krate])
            .output()
            .map_err(|e| format!("could not run cargo tree: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo tree -p {krate} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = tree.lines().find(|l| l.starts_with("tokio ")) {
            return Err(format!("{krate} depends on an async runtime ({line}); only sturnusd may"));
        }
    }
    Ok(())
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sturnusd` with `args` and reads its HTTP address off its first line of output.
fn start_sturnusd(args: &[&str]) -> Result<(Child, String), String> {
    use std::io::BufRead as _;
    println!("xtask: start target/release/sturnusd {}", args.join(" "));
    let mut child = Command::new("target/release/sturnusd")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .env("RUST_LOG", "warn")
        .spawn()
        .map_err(|e| format!("could not start sturnusd: {e}"))?;
    let stdout = child.stdout.take().ok_or("sturnusd's output was not captured")?;
    let child = Child(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("sturnusd said nothing: {e}"))?;
    let http = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .ok_or_else(|| format!("sturnusd did not say where it listens: {line:?}"))?;
    Ok((child, format!("http://{http}")))
}

#[expect(clippy::disallowed_methods, reason = "xtask waits for the Redis it started")]
fn bench_services(extra: Vec<String>) -> Result<(), String> {
    exec(
        "build the bench tool and sturnusd",
        "cargo",
        &["build", "--release", "--locked", "-p", "sturnus-benches", "-p", "sturnus-services"],
        &[],
    )?;
    let dir = std::env::temp_dir().join(format!("sturnus-bench-services-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Matches must outlive the preload and the run without heartbeats from the preloader.
    let config = dir.join("sturnusd.toml");
    std::fs::write(&config, "[rules]\nheartbeat_seconds = 86400\n").map_err(|e| e.to_string())?;
    let config = config.to_string_lossy().into_owned();
    let common =
        ["--config", config.as_str(), "--http", "127.0.0.1:0", "--relay", "off", "--no-limits"];
    let bench = |lobby: &str, store: &str| {
        let mut args = vec!["services", "--lobby", lobby, "--store", store];
        args.extend(extra.iter().map(String::as_str));
        exec("bench services", "target/release/sturnus-bench", &args, &[])
    };
    {
        let (_sturnusd, lobby) = start_sturnusd(&common)?;
        bench(&lobby, "memory")?;
    }
    if Command::new("redis-server").arg("--version").output().is_err() {
        return Err("redis-server is not installed (apt-get install -y redis-server): the \
                    memory store was measured, the Redis store was not"
            .into());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let port_arg = port.to_string();
    let dir_arg = dir.to_string_lossy().into_owned();
    let _redis = Child(
        Command::new("redis-server")
            .args(["--port", &port_arg, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &dir_arg])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start redis-server: {e}"))?,
    );
    let url = format!("redis://127.0.0.1:{port}/");
    let mut args = common.to_vec();
    args.extend(["--store", url.as_str()]);
    // Redis answers once it listens; sturnusd retries nothing at start, so wait for it.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (_sturnusd, lobby) = start_sturnusd(&args)?;
    bench(&lobby, "redis")?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn test() -> Result<(), String> {
    if has_subcommand("nextest") {
        run(&NEXTEST)?;
    } else {
        println!("xtask: cargo-nextest is not installed; using cargo test");
        run(&CARGO_TEST)?;
    }
    // nextest does not run doc tests.
    run(&DOCTEST)
}

fn deny(checks: Vec<String>) -> Result<(), String> {
    if !has_subcommand("deny") {
        return Err(
            "cargo-deny is not installed; install it with `cargo install --locked cargo-deny` \
                    and run `cargo xtask deny` again"
                .into(),
        );
    }
    let mut args = vec!["deny".to_owned(), "--locked".to_owned(), "check".to_owned()];
    args.extend(checks);
    exec("licences, advisories and sources", "cargo", &args, &[])
}

/// The fuzz targets, each for a short smoke run.
fn fuzz() -> Result<(), String> {
    let nightly_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if nightly_fuzz {
        for target in FUZZ_TARGETS {
            exec(
                "fuzzing (cargo-fuzz, 30 s)",
                "cargo",
                &[
                    "+nightly",
                    "fuzz",
                    "run",
                    "--fuzz-dir",
                    "fuzz",
                    "--features",
                    "libfuzzer",
                    target,
                    "--",
                    "-max_total_time=30",
                ],
                &[],
            )?;
        }
        return Ok(());
    }
    println!(
        "xtask: cargo-fuzz on a nightly toolchain is not available; checking that the cargo-fuzz \
         targets build, then running the stable smoke driver (seeded random and mutated inputs, \
         no coverage feedback)"
    );
    exec(
        "fuzz targets build",
        "cargo",
        &[
            "check",
            "--locked",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--features",
            "libfuzzer",
            "--bins",
        ],
        &[],
    )?;
    // Longer than CI's run, and on another seed.
    fuzz_smoke("5000000", "2", "300")
}

/// Whether `cargo <name>` is available.
fn has_subcommand(name: &str) -> bool {
    Command::new("cargo").args([name, "--version"]).output().is_ok_and(|out| out.status.success())
}

fn run(step: &Step) -> Result<(), String> {
    exec(step.what, step.program, step.args, step.env)
}

/// Runs `program args…` with extra environment variables, failing when it does.
fn exec(
    what: &str,
    program: &str,
    args: &[impl AsRef<str>],
    env: &[(&str, &str)],
) -> Result<(), String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let line = format!("{program} {}", args.join(" "));
    println!("xtask: {what} — {line}");
    let status = Command::new(program)
        .args(&args)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("could not start `{line}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: `{line}` exited with {status}"))
    }
}
