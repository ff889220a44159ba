//! The derive macros' diagnostics: each mistake a user can make gets an error that says what to
//! write instead, pointing at the user's code. Every case in `tests/ui/` must fail to compile
//! with exactly the error in its `.stderr` file.
//!
//! The `.stderr` files hold the compiler's words, so a new compiler may change them; after
//! checking that the message is still the helpful one, regenerate them with
//! `TRYBUILD=overwrite cargo test -p sturnus-object --test macros`.

#[test]
fn macro_diagnostics() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

/// What the diagnostics must not refuse: the RPC attributes in scope (a glob import brings the
/// standalone `command`, `client_rpc` and `target_rpc`, which are errors by themselves) are
/// still read and removed by `#[network_rpcs]`; contexts named by their full path; owned
/// arguments, nested ones included; a map hook and a set hook.
mod accepted {
    use sturnus_object::*;

    #[derive(Default, NetworkBehaviour)]
    pub(crate) struct Board {
        #[sync(hook = Board::on_cells)]
        pub cells: SyncMap<u8, String>,
        #[sync(hook = Board::on_players)]
        pub players: SyncSet<u32>,
        pub seen: usize,
    }

    impl Board {
        fn on_cells(&mut self, _change: &MapChange<u8, String>) {
            self.seen += 1;
        }

        fn on_players(&mut self, _change: &SetChange<u32>) {
            self.seen += 1;
        }
    }

    #[network_rpcs(vis = pub(crate))]
    impl Board {
        #[command(requires_authority = false)]
        #[expect(unused_qualifications, reason = "a context named by its path is accepted too")]
        fn write(&mut self, _ctx: &mut sturnus_object::ServerCtx<'_>, at: u8, text: String) {
            self.cells.insert(at, text);
        }

        #[client_rpc]
        fn shout(&mut self, _ctx: &mut ClientCtx<'_>, lines: Option<Vec<String>>) {
            self.seen += lines.map_or(0, |lines| lines.len());
        }

        #[target_rpc]
        fn whisper(&mut self, _ctx: &mut ClientCtx<'_>, pairs: Vec<(u8, [u16; 2])>) {
            self.seen += pairs.len();
        }
    }
}

#[test]
fn rpc_attributes_in_scope_are_still_read_by_network_rpcs() {
    use sturnus_object::{NetworkBehaviour, RpcId, RpcKind};

    let board = accepted::Board::default();
    let kinds = ["write", "shout", "whisper"]
        .map(|name| board.rpc_info(RpcId::of_name(name)).map(|info| info.kind));
    assert_eq!(kinds, [Some(RpcKind::Command), Some(RpcKind::ClientRpc), Some(RpcKind::TargetRpc)]);
}
