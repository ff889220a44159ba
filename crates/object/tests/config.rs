//! Object-layer configuration is checked before anything runs.

use std::time::Duration;

use sturnus_message::{ChannelLayout, ClientConfig, NetworkClient, NetworkServer, ServerConfig};
use sturnus_object::{ClientObjectManager, ObjectConfig, ObjectError, ServerObjectManager};
use sturnus_transport::{ChannelId, Qos};

fn field_refused_by_both(config: ObjectConfig) -> &'static str {
    let server = NetworkServer::new(ServerConfig::default()).unwrap();
    let client = NetworkClient::new(ClientConfig::default()).unwrap();
    let on_server = match ServerObjectManager::with_config(server, config.clone()) {
        Err(ObjectError::InvalidConfig { field, .. }) => field,
        other => panic!("the server accepted {config:?}: {:?}", other.map(|_| ())),
    };
    let on_client = match ClientObjectManager::with_config(client, config.clone()) {
        Err(ObjectError::InvalidConfig { field, .. }) => field,
        other => panic!("the client accepted {config:?}: {:?}", other.map(|_| ())),
    };
    assert_eq!(on_server, on_client);
    on_server
}

#[test]
fn an_out_of_range_object_config_is_refused_by_name() {
    let mut long = ObjectConfig::default();
    long.sync_interval = Duration::MAX;
    assert_eq!(field_refused_by_both(long), "sync_interval");
    let layout = ServerConfig::default().channels;
    for qos in [Qos::Unreliable, Qos::Reliable, Qos::StateUpdate, Qos::ReliableStateUpdate] {
        let mut config = ObjectConfig::default();
        config.channel = layout.first_of(qos);
        assert_eq!(field_refused_by_both(config), "channel", "{qos:?}");
    }
    // A channel the layout does not have, and a raw one, are refused too.
    let mut config = ObjectConfig::default();
    config.channel = Some(ChannelId(200));
    assert_eq!(field_refused_by_both(config), "channel");
    for qos in [Qos::ReliableSequenced, Qos::ReliableFragmentedSequenced] {
        let mut config = ObjectConfig::default();
        config.channel = layout.first_of(qos);
        config.validate(&layout).unwrap();
    }
}

#[test]
fn a_raw_channel_cannot_carry_objects() {
    let mut layout = ChannelLayout::default();
    let raw = layout.add_raw(Qos::ReliableFragmentedSequenced).unwrap();
    let mut config = ObjectConfig::default();
    config.channel = Some(raw);
    assert!(matches!(
        config.validate(&layout),
        Err(ObjectError::InvalidConfig { field: "channel", .. })
    ));
    config.channel = None;
    assert_eq!(
        config.validate(&layout).unwrap(),
        ChannelId(7),
        "the first typed one, not the raw one"
    );
}
