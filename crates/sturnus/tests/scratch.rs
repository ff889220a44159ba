//! A game that depends only on `sturnus` and `serde`, built and run as a cargo project of its
//! own outside the workspace: the proof that the derives' generated code names nothing but the
//! facade (the project cannot name `sturnus_message` or `sturnus_object`, which are not its
//! dependencies). The game is `game/mod.rs`, the same one `derive_through_facade.rs` plays,
//! and the README's minimal game (`examples/src/bin/minimal.rs`), built and played as a
//! second binary.
//!
//! It runs `cargo run --offline` on a project under `CARGO_TARGET_TMPDIR`, with a target
//! directory of its own there (the outer cargo may hold the workspace's lock while tests run),
//! kept between runs so only the first build compiles the dependencies. It uses the
//! workspace's `Cargo.lock`, so it needs no network and gets the versions the workspace was
//! tested with.

use std::path::Path;
use std::process::Command;

#[test]
fn a_project_depending_only_on_sturnus_and_serde_builds_and_plays() {
    let facade = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = facade.join("../..").canonicalize().unwrap();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("facade-scratch");
    let project = root.join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();

    // `[workspace]`: a workspace of its own, not a stray member of ours (it lives under our
    // target directory).
    let manifest = format!(
        r#"[package]
name = "facade-scratch"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
sturnus = {{ path = {facade:?} }}
serde = {{ version = "1", features = ["derive"] }}

[workspace]
"#,
        facade = facade.display().to_string(),
    );
    write_if_changed(&project.join("Cargo.toml"), &manifest);
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).unwrap();
    if !project.join("Cargo.lock").exists() {
        write_if_changed(&project.join("Cargo.lock"), &lock);
    }
    let game = std::fs::read_to_string(facade.join("tests/game/mod.rs")).unwrap();
    write_if_changed(&project.join("src/game.rs"), &game);
    let main = r#"mod game;

fn main() {
    let seen = game::play().expect("the game runs");
    assert_eq!(seen, game::expected());
    println!("the facade game played");
}
"#;
    write_if_changed(&project.join("src/main.rs"), main);
    // The README's minimal game, as a second binary of the same project.
    let minimal = std::fs::read_to_string(workspace.join("examples/src/bin/minimal.rs")).unwrap();
    std::fs::create_dir_all(project.join("src/bin")).unwrap();
    write_if_changed(&project.join("src/bin/minimal.rs"), &minimal);

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let run = |bin: &str, args: &[&str]| {
        Command::new(&cargo)
            .args(["run", "--offline", "--quiet", "--bin", bin, "--manifest-path"])
            .arg(project.join("Cargo.toml"))
            .arg("--")
            .args(args)
            .env("CARGO_TARGET_DIR", root.join("target"))
            .output()
            .unwrap()
    };
    let output = run("facade-scratch", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the scratch project failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "the facade game played", "{stderr}");

    // The minimal game, built there too, plays.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = run("minimal", &[&format!("127.0.0.1:{port}")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("ada hears: welcome") && stdout.contains("bob sees avatars"),
        "{stdout}"
    );
}

/// Writes `contents` unless the file already holds them (an unchanged file keeps its mtime,
/// so cargo does not rebuild).
fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).unwrap();
    }
}
