//! The transport targets: packet decoding and a live endpoint.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_transport::proto::codec::Reader;
use sturnus_transport::proto::control::Control;
use sturnus_transport::proto::packet::{DataHeader, RecordHeader};
use sturnus_transport::{ChannelId, Endpoint, EndpointConfig, Event, Qos};

/// Decodes `data` as a data packet (header, then records) and as a control packet. Must
/// never panic.
pub fn packet_decode(data: &[u8]) {
    let channels = Qos::ALL;
    let mut r = Reader::new(data);
    if DataHeader::decode(&mut r).is_ok() {
        while RecordHeader::decode(&mut r, &channels).is_ok() {}
    }
    let _ = Control::decode(data);
}

/// A server endpoint with one established connection, fed `data` split into datagrams (each
/// prefixed by a length byte and a source byte: even sources are the connected client, odd
/// ones strangers). Must never panic and must never accept a stranger.
pub struct EndpointHarness {
    server: Endpoint,
    client_addr: SocketAddr,
    now: Instant,
    buf: Vec<u8>,
}

impl EndpointHarness {
    /// Builds the pair and completes the handshake over a perfect in-memory link.
    pub fn new(start: Instant) -> Self {
        let config = EndpointConfig { channels: Qos::ALL.to_vec(), ..EndpointConfig::default() };
        let server_addr: SocketAddr = "10.0.0.1:7777".parse().expect("literal");
        let client_addr: SocketAddr = "10.0.0.2:7777".parse().expect("literal");
        let mut server = Endpoint::with_deterministic_secrets_for_tests(config.clone(), start, 1)
            .expect("valid config");
        let mut client =
            Endpoint::with_deterministic_secrets_for_tests(config, start, 2).expect("valid config");
        let conn = client.connect(start, server_addr).expect("room for one");
        let _ = client.send(conn, ChannelId(6), b"hello");
        let mut buf = vec![0u8; 1500];
        for _ in 0..8 {
            while let Some(t) = client.poll_transmit(start, &mut buf) {
                server.handle_datagram(start, client_addr, &buf[..t.len]);
            }
            while let Some(t) = server.poll_transmit(start, &mut buf) {
                client.handle_datagram(start, server_addr, &buf[..t.len]);
            }
        }
        while server.poll_event().is_some() {}
        assert_eq!(server.connection_count(), 1, "the harness connects");
        Self { server, client_addr, now: start, buf }
    }

    /// Feeds one fuzz input.
    pub fn feed(&mut self, data: &[u8]) {
        let mut rest = data;
        while let [len, source, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            let (datagram, next) = tail.split_at(len);
            let from = if source % 2 == 0 {
                self.client_addr
            } else {
                SocketAddr::from(([192, 0, 2, *source], 1000 + u16::from(*source)))
            };
            self.now += Duration::from_millis(u64::from(*source % 16));
            self.server.handle_datagram(self.now, from, datagram);
            self.server.handle_timeout(self.now);
            while self.server.poll_transmit(self.now, &mut self.buf).is_some() {}
            while let Some(event) = self.server.poll_event() {
                assert!(!matches!(event, Event::Connected(_)), "a stranger was accepted");
            }
            rest = next;
        }
        assert!(self.server.connection_count() <= 1);
    }
}
