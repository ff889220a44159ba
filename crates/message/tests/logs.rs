//! Lifecycle logs at info level, inside a span that names the endpoint, so two endpoints in
//! one process are told apart.

use sturnus_message::{ClientConfig, NetworkClient, NetworkServer, ServerConfig, driver};
use sturnus_transport::MemoryNetwork;

#[test]
fn lifecycle_logs_name_their_endpoint() {
    let ((), text) = sturnus_testkit::logs::capture_logs("info", || {
        let network = MemoryNetwork::new();
        let server_config = ServerConfig { name: "arena".into(), ..ServerConfig::default() };
        let kinds = server_config.channels.kinds().to_vec();
        let addr = "10.0.0.1:1".parse().unwrap();
        let mut server = NetworkServer::new(server_config).unwrap();
        let now = driver::now();
        server.start(now, network.bind(addr, kinds.clone()).unwrap()).unwrap();
        let config = ClientConfig { name: "ada".into(), ..ClientConfig::default() };
        let mut client = NetworkClient::new(config).unwrap();
        client.connect(now, network.endpoint(kinds), addr).unwrap();
        for _ in 0..5 {
            server.update(now).unwrap();
            client.update(now).unwrap();
        }
        assert!(client.is_authenticated());
        // The stats read as one line each, for a status view. The client sent its credentials
        // and, once accepted, its first time request; the server answered both.
        let player = server.players().next().unwrap();
        let stats = server.player_stats(player).unwrap().to_string();
        assert!(
            stats.starts_with("received 2, handled 2, sent 2 (0 refused) · dropped 0"),
            "{stats}"
        );
        let stats = server.stats().to_string();
        assert!(stats.starts_with("authentication: 1 requests, 1 accepted, 0 rejected"), "{stats}");
        let stats = client.stats().to_string();
        assert!(stats.starts_with("received 2, handled 2, sent 2 · dropped 0"), "{stats}");
        client.disconnect();
        server.update(now).unwrap();
    });
    let line = |what: &str| {
        text.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no `{what}` in:\n{text}"))
            .to_string()
    };
    for what in ["server started", "player connected", "player authenticated", "player left"] {
        let found = line(what);
        assert!(found.contains("INFO") && found.contains("endpoint{name=arena}"), "{found}");
    }
    for what in ["client connecting", "client connected", "client authenticated"] {
        let found = line(what);
        assert!(found.contains("INFO") && found.contains("endpoint{name=ada}"), "{found}");
    }
}
