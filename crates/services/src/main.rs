//! `sturnusd`: Sturnus's matchmaker and relay. `sturnusd --help` says how to run it.

use std::process::ExitCode;

use sturnus_services::config::{self, Command};
use tracing_subscriber::EnvFilter;

#[expect(
    clippy::print_stdout,
    reason = "the help, the version and the bound addresses are the program's output"
)]
#[expect(clippy::print_stderr, reason = "a command-line error is told on standard error")]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match config::parse(&args) {
        Ok(Command::Serve(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("sturnusd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::PrintConfig(config)) => {
            match toml::to_string_pretty(&*config) {
                Ok(text) => print!("{text}"),
                Err(e) => {
                    eprintln!("sturnusd: {e}");
                    return ExitCode::FAILURE;
                }
            }
            return ExitCode::SUCCESS;
        }
        Ok(_) => return ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sturnusd: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sturnusd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served =
        runtime.block_on(sturnus_services::server::serve(*config, stop_signal(), |bound| {
            // One line on standard output that scripts and tests read for the bound ports.
            match bound.relay {
                Some(relay) => println!("sturnusd listening http={} relay={relay}", bound.http),
                None => println!("sturnusd listening http={}", bound.http),
            }
        }));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sturnusd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("stopping: finishing requests in flight");
}
