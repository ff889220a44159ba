//! UDP echo between two sockets of the Sturnus socket layer.
//!
//! A server thread echoes every datagram it receives; the client sends numbered pings, waits for
//! each echo and prints what it sent, what came back and how long it took. With `--link PRESET`
//! the client's traffic goes through the link emulator (both directions), so losses and delays
//! become visible; `--seed N` picks the emulator's random draws.
//!
//! ```text
//! cargo run -p sturnus-examples --bin udp_echo -- [--count N] [--link perfect|lan|wifi|4g|bad] [--seed N] [--ipv6]
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints what it does")]
#![allow(clippy::disallowed_methods, reason = "an example measures real round-trip times")]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use sturnus_examples::{EchoOptions, conditioned, link_summary};
use sturnus_socket::{Readiness, Socket, SocketError, SocketFactory, UdpSocketFactory};

const QUIT: &[u8] = b"quit";

/// Echoes datagrams until it receives `quit` or hears nothing for a few seconds.
fn serve(mut socket: impl Socket) -> Result<u64, SocketError> {
    let mut buf = [0u8; 2048];
    let mut echoed = 0;
    loop {
        if socket.wait_readable(Some(Duration::from_secs(5)))? == Readiness::TimedOut {
            return Ok(echoed);
        }
        while let Some(meta) = socket.recv_from(&mut buf)? {
            if &buf[..meta.len] == QUIT {
                return Ok(echoed);
            }
            let _ = socket.send_to(&buf[..meta.len], meta.from)?;
            echoed += 1;
        }
    }
}

/// Sends `count` pings and waits for each echo; returns how many came back.
fn ping(client: &mut impl Socket, server: SocketAddr, count: u32) -> Result<u32, SocketError> {
    let mut buf = [0u8; 2048];
    let mut answered = 0;
    for seq in 0..count {
        let message = format!("ping {seq}");
        let sent_at = Instant::now();
        let _ = client.send_to(message.as_bytes(), server)?;
        println!("sent     {message:?} to {server}");
        let deadline = sent_at + Duration::from_secs(1);
        let mut got_it = false;
        while !got_it && Instant::now() < deadline {
            client.wait_readable(Some(deadline.saturating_duration_since(Instant::now())))?;
            while let Some(meta) = client.recv_from(&mut buf)? {
                let echo = String::from_utf8_lossy(&buf[..meta.len]);
                let rtt = sent_at.elapsed();
                println!("received {echo:?} from {} after {} µs", meta.from, rtt.as_micros());
                if echo == message {
                    got_it = true;
                    answered += 1;
                }
            }
        }
        if !got_it {
            println!("lost     {message:?} (no echo within 1 s)");
        }
    }
    Ok(answered)
}

fn run(options: &EchoOptions) -> Result<(), SocketError> {
    let factory = UdpSocketFactory::default();
    let bind = options.bind_addr();
    let server = factory.server_socket(bind)?;
    let server_addr = server.local_addr();
    println!("server listening on {server_addr} (kernel buffers {:?})", server.buffer_sizes());
    let server_thread = thread::spawn(move || serve(server));

    let client = factory.client_socket(server_addr)?;
    println!("client bound to {}", client.local_addr());
    let (answered, stats) = match options.link {
        None => {
            let mut client = client;
            (ping(&mut client, server_addr, options.count)?, client.stats())
        }
        Some(preset) => {
            let seed = options.seed;
            println!(
                "conditioning the client's traffic with the `{preset}` link preset, seed {seed}"
            );
            let mut client = conditioned(client, preset, seed)?;
            let answered = ping(&mut client, server_addr, options.count)?;
            println!("{}", link_summary("out", &client.outgoing_stats()));
            if let Some(incoming) = client.incoming_stats() {
                println!("{}", link_summary("in ", &incoming));
            }
            (answered, client.stats())
        }
    };
    let mut quitter = factory.client_socket(server_addr)?;
    let _ = quitter.send_to(QUIT, server_addr)?;
    let echoed = server_thread.join().expect("the server thread does not panic")?;
    println!("client socket stats: {stats:?}");
    println!("{answered}/{} pings answered; the server echoed {echoed} datagrams", options.count);
    Ok(())
}

fn main() -> ExitCode {
    sturnus_examples::init_logging();
    sturnus_examples::echo_main("udp_echo", run)
}
