//! `EndpointConfig::read_interval` over real UDP: a paced `Host` drains its socket at most
//! once per interval (what arrives meanwhile waits in the kernel and is read as one batch),
//! and every message still arrives, in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sturnus_socket::UdpSocketFactory;
use sturnus_testkit::reads::{ReadLogFactory, check_spacing};
use sturnus_transport::{ChannelId, EndpointConfig, Host, HostEvent};

#[test]
#[expect(clippy::disallowed_methods, reason = "the client paces its sends on the real clock")]
fn a_paced_host_drains_at_most_once_per_interval_and_loses_nothing() {
    const INTERVAL: Duration = Duration::from_millis(40);
    const MESSAGES: u8 = 20;
    let reads = Arc::default();
    let logged = ReadLogFactory::new(UdpSocketFactory::default(), Arc::clone(&reads));
    let config = EndpointConfig { read_interval: INTERVAL, ..EndpointConfig::default() };
    let mut server = Host::bind(config, &logged, "127.0.0.1:0".parse().unwrap()).unwrap();
    let (mut client, conn) = Host::connect_to(
        EndpointConfig::default(),
        &UdpSocketFactory::default(),
        server.local_addr(),
    )
    .unwrap();

    // The client sends one unreliable message (nothing resent to hide a loss) every 5 ms once
    // connected: 100 ms of messages, which an unpaced server reads one by one.
    let (mut connected, mut sent, mut next_send) = (false, 0u8, Instant::now());
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < usize::from(MESSAGES) {
        assert!(Instant::now() < deadline, "got {received:?} of {MESSAGES} messages");
        loop {
            match client.receive().unwrap() {
                HostEvent::Nothing => break,
                HostEvent::Connect(c) => connected = c == conn,
                other => panic!("client: unexpected {other:?}"),
            }
        }
        if connected && sent < MESSAGES && Instant::now() >= next_send {
            client.send(conn, ChannelId(1), &[sent]).unwrap();
            client.flush().unwrap();
            sent += 1;
            next_send += Duration::from_millis(5);
        }
        loop {
            match server.receive().unwrap() {
                HostEvent::Nothing => break,
                HostEvent::Connect(_) => {}
                HostEvent::Data { payload, .. } => received.extend_from_slice(payload),
                other => panic!("server: unexpected {other:?}"),
            }
        }
        server.wait(Some(Duration::from_millis(1))).unwrap();
    }
    assert_eq!(received, (0..MESSAGES).collect::<Vec<_>>());
    assert!(reads.lock().unwrap().len() >= 2, "the handshake alone takes two reads");
    check_spacing(&reads, INTERVAL, Duration::from_millis(10)).unwrap();
}
