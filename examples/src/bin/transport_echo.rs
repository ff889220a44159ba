//! The transport layer's walkthrough, as in UNET's blog post: configure channels, add a host,
//! connect, send on a reliable channel and an unreliable one, poll for events, disconnect.
//!
//! A server host echoes every message back on the channel it came on; a client host connects,
//! sends numbered messages on both channels, prints every event and the connection's
//! statistics. With `--link PRESET` the client's traffic crosses the link emulator (both
//! directions), so the reliable channel's resends and the unreliable channel's losses show;
//! `--seed N` picks the emulator's random draws.
//!
//! The closing statistics keep two units apart: **messages** are what the application sent
//! and got back (each echo is one), **packets** are the UDP datagrams the transport sent and
//! received to carry them (with acknowledgements, resends and keep-alives), which the link
//! emulator drops, delays and duplicates.
//!
//! ```text
//! cargo run -p sturnus-examples --bin transport_echo -- [--count N] [--link perfect|lan|wifi|4g|bad] [--seed N] [--ipv6]
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints what it does")]
#![allow(clippy::disallowed_methods, reason = "an example measures real time")]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use sturnus_examples::{EchoOptions, conditioned, link_summary};
use sturnus_socket::{Socket, SocketFactory, UdpSocketFactory};
use sturnus_transport::{ChannelId, EndpointConfig, Host, HostError, HostEvent, Qos};

const RELIABLE: ChannelId = ChannelId(0);
const UNRELIABLE: ChannelId = ChannelId(1);

/// Step 2 of the walkthrough: the network configuration. Channel 0 is reliable and ordered,
/// channel 1 unreliable (the layout UNET's high-level API used); both sides must agree.
fn config() -> EndpointConfig {
    EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
        ..EndpointConfig::default()
    }
}

/// The server: echoes every message until its client disconnects (or it hears nothing for a
/// while).
fn serve<S: Socket>(mut host: Host<S>) -> Result<u32, HostError> {
    let mut echoed = 0;
    let mut idle_since = Instant::now();
    loop {
        match host.receive()? {
            HostEvent::Connect(conn) => println!("server: connect event from {conn}"),
            HostEvent::Data { conn, channel, payload } => {
                let copy = payload.to_vec();
                host.send(conn, channel, &copy).expect("the echo fits the channel");
                echoed += 1;
                idle_since = Instant::now();
            }
            HostEvent::Disconnect(conn, reason) => {
                println!("server: disconnect event from {conn}: {reason}");
                host.flush()?;
                return Ok(echoed);
            }
            HostEvent::Nothing => {
                if idle_since.elapsed() > Duration::from_secs(15) {
                    return Ok(echoed);
                }
                host.wait(Some(Duration::from_millis(50)))?;
            }
            _ => {}
        }
    }
}

/// Connects, sends, collects the echoes, prints the statistics and disconnects; returns the
/// host, for a look at its socket.
fn client<S: Socket>(
    mut host: Host<S>,
    server: SocketAddr,
    count: u32,
    conditioned: bool,
) -> Result<Host<S>, HostError> {
    // Step 4: connect. The connect event (or a disconnect with the reason) follows.
    let conn = host.connect(server)?;
    println!("client: connecting to {server} as {conn}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match host.receive()? {
            HostEvent::Connect(c) if c == conn => break,
            HostEvent::Disconnect(_, reason) => {
                println!("client: could not connect: {reason}");
                return Ok(host);
            }
            _ if Instant::now() > deadline => {
                println!("client: no answer from {server}");
                return Ok(host);
            }
            _ => host.wait(Some(Duration::from_millis(50)))?,
        }
    }
    println!("client: connect event: {conn} is established");

    // Step 5: send on a reliable channel and on an unreliable one.
    for i in 0..count {
        let reliable = format!("reliable #{i}");
        let unreliable = format!("unreliable #{i}");
        host.send(conn, RELIABLE, reliable.as_bytes()).expect("small messages fit");
        host.send(conn, UNRELIABLE, unreliable.as_bytes()).expect("small messages fit");
        println!("client: sent {reliable:?} on {RELIABLE} and {unreliable:?} on {UNRELIABLE}");
    }
    host.flush()?;

    // Step 6: poll for events until every reliable echo is back (unreliable ones may be lost).
    let mut reliable_back = 0;
    let mut unreliable_back = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Once the reliable echoes are in, give the unreliable ones a moment more.
    let mut grace: Option<Instant> = None;
    while Instant::now() < deadline
        && grace.is_none_or(|g| Instant::now() < g)
        && unreliable_back + reliable_back < 2 * count
    {
        if reliable_back == count && grace.is_none() {
            grace = Some(Instant::now() + Duration::from_millis(500));
        }
        match host.receive()? {
            HostEvent::Data { channel, payload, .. } => {
                println!("client: data event on {channel}: {:?}", String::from_utf8_lossy(payload));
                if channel == RELIABLE {
                    reliable_back += 1;
                } else {
                    unreliable_back += 1;
                }
            }
            HostEvent::Disconnect(_, reason) => {
                println!("client: disconnect event: {reason}");
                return Ok(host);
            }
            HostEvent::Nothing => host.wait(Some(Duration::from_millis(50)))?,
            _ => {}
        }
    }
    let stats = host.connection_stats(conn).expect("still connected");
    println!(
        "client: messages: reliable {count} sent, {reliable_back} echoed back; \
         unreliable {count} sent, {unreliable_back} echoed back"
    );
    println!(
        "client: packets: {} sent, {} received; loss {:.1} % out, {:.1} % in; \
         {} reliable messages resent; rtt {:?}",
        stats.packets_sent,
        stats.packets_received,
        stats.loss_out_percent(),
        stats.loss_in_percent(),
        stats.resends,
        stats.rtt,
    );

    // Step 7: disconnect. The server sees a disconnect event.
    host.disconnect(conn);
    host.flush()?;
    // The disconnect notice is repeated a few times to survive loss, and an emulated link
    // holds datagrams for its latency: give them a moment before the socket goes away.
    let until = Instant::now() + Duration::from_millis(if conditioned { 1000 } else { 100 });
    while Instant::now() < until {
        let _ = host.receive()?;
        host.wait(Some(Duration::from_millis(10)))?;
    }
    println!("client: disconnected");
    Ok(host)
}

fn run(options: &EchoOptions) -> Result<(), HostError> {
    let factory = UdpSocketFactory::default();
    let bind = options.bind_addr();
    // Step 3: add a host. The server's socket listens; the client's reaches it.
    let server = Host::bind(config(), &factory, bind)?;
    let server_addr = server.local_addr();
    println!("server: host listening on {server_addr}");
    let server_thread = thread::spawn(move || serve(server));

    let socket = factory.client_socket(server_addr)?;
    let client_config = EndpointConfig { accept_connections: false, ..config() };
    match options.link {
        None => {
            client(Host::new(client_config, socket)?, server_addr, options.count, false)?;
        }
        Some(preset) => {
            let seed = options.seed;
            println!("client: conditioning traffic with the `{preset}` link preset, seed {seed}");
            let host = Host::new(client_config, conditioned(socket, preset, seed)?)?;
            let host = client(host, server_addr, options.count, true)?;
            // Every datagram, the handshake and the close notices included.
            println!("{}", link_summary("out", &host.socket().outgoing_stats()));
            if let Some(incoming) = host.socket().incoming_stats() {
                println!("{}", link_summary("in ", &incoming));
            }
        }
    }
    let echoed = server_thread.join().expect("the server thread does not panic")?;
    println!("server: echoed {echoed} messages");
    Ok(())
}

fn main() -> ExitCode {
    sturnus_examples::init_logging();
    sturnus_examples::echo_main("transport_echo", run)
}
