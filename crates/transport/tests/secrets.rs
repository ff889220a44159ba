//! Where the endpoint's secrets come from: the operating system, unless a test asks for
//! repeatable ones by name. Two endpoints made the ordinary way never share a cookie key or a
//! salt, and the transport does not even depend on the seeded generator of `sturnus-netem`
//! outside its tests.

use std::net::SocketAddr;
use std::time::Instant;

use sturnus_transport::proto::control::Control;
use sturnus_transport::{Endpoint, EndpointConfig};

#[expect(clippy::disallowed_methods, reason = "a starting instant for the endpoints")]
fn start() -> Instant {
    Instant::now()
}

const SERVER: &str = "192.0.2.1:7777";
const CLIENT: &str = "192.0.2.2:7777";

/// The connect request `client` sends to start a connection, and the salt in it.
fn connect_request(client: &mut Endpoint, now: Instant) -> (Vec<u8>, u64) {
    let mut buf = [0u8; 1500];
    client.connect(now, SERVER.parse().unwrap()).unwrap();
    let t = client.poll_transmit(now, &mut buf).expect("the request goes out at once");
    let request = buf[..t.len].to_vec();
    match Control::decode(&request) {
        Ok(Control::ConnectRequest { client_salt, .. }) => (request, client_salt),
        other => panic!("not a connect request: {other:?}"),
    }
}

/// The cookie MAC `server` answers `request` with (a function of its cookie key, the address,
/// the salt and the time only).
fn cookie_mac(server: &mut Endpoint, request: &[u8], now: Instant) -> u64 {
    let from: SocketAddr = CLIENT.parse().unwrap();
    server.handle_datagram(now, from, request);
    let mut buf = [0u8; 1500];
    let t = server.poll_transmit(now, &mut buf).expect("a challenge");
    match Control::decode(&buf[..t.len]) {
        Ok(Control::Challenge { cookie, .. }) => cookie.mac,
        other => panic!("not a challenge: {other:?}"),
    }
}

#[test]
fn endpoints_made_the_ordinary_way_draw_different_cookie_keys_and_salts() {
    let now = start();
    let config = EndpointConfig::default();
    let new = || Endpoint::new(config.clone(), now).unwrap();

    let (request, salt_a) = connect_request(&mut new(), now);
    let (_, salt_b) = connect_request(&mut new(), now);
    assert_ne!(salt_a, salt_b, "two clients drew the same salt");
    let mut client = new();
    client.connect(now, "192.0.2.9:1".parse().unwrap()).unwrap();
    let (_, salt_c) = connect_request(&mut client, now);
    assert_ne!(salt_c, salt_a, "a second connection of one endpoint drew a known salt");

    // The same request, from the same address at the same time: the cookies differ only by the
    // servers' keys.
    let (mac_a, mac_b) =
        (cookie_mac(&mut new(), &request, now), cookie_mac(&mut new(), &request, now));
    assert_ne!(mac_a, mac_b, "two servers share a cookie key");

    // Only the constructor named for tests repeats itself.
    let seeded = || Endpoint::with_deterministic_secrets_for_tests(config.clone(), now, 5).unwrap();
    assert_eq!(connect_request(&mut seeded(), now).1, connect_request(&mut seeded(), now).1);
    assert_eq!(cookie_mac(&mut seeded(), &request, now), cookie_mac(&mut seeded(), &request, now));
}

/// The dependency table of a `Cargo.toml` section, up to the next section.
fn section<'a>(manifest: &'a str, name: &str) -> &'a str {
    let header = format!("\n[{name}]\n");
    let start = manifest.find(&header).map_or(manifest.len(), |i| i + header.len());
    let rest = &manifest[start..];
    &rest[..rest.find("\n[").unwrap_or(rest.len())]
}

#[test]
fn the_transport_depends_on_the_seeded_generator_only_in_its_tests() {
    let manifest = include_str!("../Cargo.toml");
    let dependencies = section(manifest, "dependencies");
    assert!(dependencies.contains("getrandom"), "{dependencies}");
    assert!(
        !dependencies.contains("sturnus-netem"),
        "sturnus-netem is a dependency of the transport itself:\n{dependencies}"
    );
    assert!(section(manifest, "dev-dependencies").contains("sturnus-netem"));
}
