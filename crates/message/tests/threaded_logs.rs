//! A `ThreadedHost` logs on its I/O thread inside the span naming the server or client that
//! runs over it, as the message layer's own logs are.
//!
//! A test binary of its own: the I/O threads log to the global subscriber, which this one
//! test installs.

use std::time::Duration;

use sturnus_message::{
    ClientConfig, NetworkClient, NetworkServer, ServerConfig, Transport, driver,
};
use sturnus_socket::{LoopbackSocketFactory, SocketFactory};
use sturnus_transport::{EndpointConfig, ThreadedHost};

#[test]
fn the_io_thread_logs_under_its_endpoints_name() {
    let sink = sturnus_testkit::logs::capture_global_logs("debug");

    let factory = LoopbackSocketFactory::new();
    let server_config = ServerConfig { name: "arena".into(), ..ServerConfig::default() };
    let endpoint = server_config.channels.endpoint_config();
    let host =
        ThreadedHost::bind(endpoint.clone(), &factory, "127.0.0.1:7000".parse().unwrap()).unwrap();
    let addr = host.local_addr();
    let mut server = NetworkServer::new(server_config).unwrap();
    server.start(driver::now(), host).unwrap();

    let config = ClientConfig { name: "ada".into(), ..ClientConfig::default() };
    let mut client = NetworkClient::new(config).unwrap();
    let client_endpoint = EndpointConfig { accept_connections: false, ..endpoint };
    let host = ThreadedHost::new(client_endpoint, factory.client_socket(addr).unwrap()).unwrap();
    // Boxed, as the NetworkManager hands transports over: the box passes the span on.
    let host: Box<dyn Transport> = Box::new(host);
    client.connect(driver::now(), host, addr).unwrap();
    // Real threads: a hang guard, not a speed requirement.
    let deadline = driver::now() + Duration::from_secs(20);
    while !client.is_authenticated() && driver::now() < deadline {
        server.update(driver::now()).unwrap();
        client.update(driver::now()).unwrap();
        server.wait(Duration::from_millis(1)).unwrap();
    }
    assert!(client.is_authenticated());
    drop(client);
    drop(server);

    let text = sink.contents();
    // The transport's own logs, written on the I/O threads.
    let io_line = |what: &str| {
        text.lines()
            .find(|l| {
                l.contains("sturnus-io") && l.contains("sturnus_transport") && l.contains(what)
            })
            .unwrap_or_else(|| panic!("no I/O thread line `{what}` in:\n{text}"))
            .to_string()
    };
    // The server's endpoint accepts the connection; the client's opens it.
    let accepted = io_line(": accepted");
    assert!(accepted.contains("endpoint{name=arena}"), "{accepted}");
    for what in [": connecting", ": connected"] {
        let line = io_line(what);
        assert!(line.contains("endpoint{name=ada}"), "{line}");
    }
}
