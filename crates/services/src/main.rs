//! `sturnusd`: the matchmaker and relay service.

fn main() {}
