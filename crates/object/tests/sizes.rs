//! What an update costs on the wire: only the dirty fields of a dirty behaviour, after a mask
//! that grows with the fields, not a fixed 32 bits.

use sturnus_object::{NetId, NetworkBehaviour, SyncVar, wire};

#[derive(Default, NetworkBehaviour)]
struct Ten {
    #[sync]
    a: SyncVar<i32>,
    #[sync]
    b: SyncVar<i32>,
    #[sync]
    c: SyncVar<i32>,
    #[sync]
    d: SyncVar<String>,
    #[sync]
    e: SyncVar<u64>,
    #[sync]
    f: SyncVar<f32>,
    #[sync]
    g: SyncVar<bool>,
    #[sync]
    h: SyncVar<i32>,
    #[sync]
    i: SyncVar<[f32; 3]>,
    #[sync]
    j: SyncVar<i32>,
}

#[test]
fn a_one_field_change_on_a_ten_field_behaviour_costs_its_mask_and_its_value() {
    let mut ten = Ten::default();
    ten.d.set("a fairly long name that is not sent again".into());
    ten.i.set([1.0, 2.0, 3.0]);
    ten.clear_dirty();
    let mut full = Vec::new();
    ten.write_full(&mut full).unwrap();

    ten.h.set(-3);
    let mut delta = Vec::new();
    ten.write_changes(&mut delta).unwrap();
    // Field 7 is in the mask's second byte: two mask bytes, then -3 as a zigzag varint.
    assert_eq!(delta, [0x80, 0x01, 0x05]);
    assert!(full.len() > 50, "the full state is {} bytes", full.len());

    ten.clear_dirty();
    ten.a.set(5);
    delta.clear();
    ten.write_changes(&mut delta).unwrap();
    assert_eq!(delta, [0x01, 0x0a], "field 0: one mask byte and one value byte");

    // On the wire: the message id (2), the object id (1), the behaviour index (1), then the
    // delta itself, with no length in front (it runs to the end of the message).
    let header = wire::Update { net_id: NetId(7), behaviour: 0 };
    assert_eq!(wire::body(&header, &delta).len() + 2, 2 + 1 + 1 + 2);

    // A clean behaviour has nothing to send.
    ten.clear_dirty();
    assert!(!ten.is_dirty());
}

macro_rules! wide {
    ($name:ident { $($field:ident),* }) => {
        #[derive(Default, NetworkBehaviour)]
        struct $name { $( #[sync] $field: SyncVar<u8>, )* }
    };
}

wide!(Seventy {
    f00,
    f01,
    f02,
    f03,
    f04,
    f05,
    f06,
    f07,
    f08,
    f09,
    f10,
    f11,
    f12,
    f13,
    f14,
    f15,
    f16,
    f17,
    f18,
    f19,
    f20,
    f21,
    f22,
    f23,
    f24,
    f25,
    f26,
    f27,
    f28,
    f29,
    f30,
    f31,
    f32,
    f33,
    f34,
    f35,
    f36,
    f37,
    f38,
    f39,
    f40,
    f41,
    f42,
    f43,
    f44,
    f45,
    f46,
    f47,
    f48,
    f49,
    f50,
    f51,
    f52,
    f53,
    f54,
    f55,
    f56,
    f57,
    f58,
    f59,
    f60,
    f61,
    f62,
    f63,
    f64,
    f65,
    f66,
    f67,
    f68,
    f69
});

#[test]
fn there_is_no_limit_of_32_or_64_fields() {
    let mut server = Seventy::default();
    server.f69.set(9);
    server.f33.set(3);
    let mut delta = Vec::new();
    server.write_changes(&mut delta).unwrap();
    // 70 fields: ten mask bytes (seven fields each), then two one-byte values.
    assert_eq!(delta.len(), 10 + 2);
    let mut client = Seventy::default();
    let mut input = &delta[..];
    client.read_changes(&mut input).unwrap();
    assert!(input.is_empty());
    assert_eq!((*client.f69, *client.f33, *client.f00), (9, 3, 0));
}
