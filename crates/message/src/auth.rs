//! Authentication: what a client must prove before its messages reach handlers.

use std::any::Any;
use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sturnus_transport::PeerIdentity;

use crate::event::GoodbyeReason;
use crate::{Message, PlayerId, codec};

/// Who is asking to be let in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applicant {
    /// The player the connection was given.
    pub player: PlayerId,
    /// Its remote address (`None` for a local client in host mode, or a remote one whose
    /// transport knows no addresses: [`is_local`](Self::is_local) tells them apart).
    pub address: Option<SocketAddr>,
    /// Whether what it sends cannot be read or altered on the way: its connection is
    /// encrypted and authenticated (a secure transport), or it is a local client.
    pub secure: bool,
    /// What its transport proved about it: the client id and user data of the connect token
    /// it connected with (the netcode transport mode), or `None`.
    pub identity: Option<PeerIdentity>,
    /// The host's own player (a local client in host mode): no transport in between.
    local: bool,
}

impl Applicant {
    /// A remote applicant (for testing an [`Authenticator`]): `secure` and `identity` as its
    /// transport would report them. Without an `address`, it is still remote (a transport
    /// that knows no addresses): see [`local`](Self::local) for the host's own player.
    pub fn new(
        player: PlayerId,
        address: Option<SocketAddr>,
        secure: bool,
        identity: Option<PeerIdentity>,
    ) -> Self {
        Self { player, address, secure, identity, local: false }
    }

    /// The host's own player, a local client in host mode (for testing an
    /// [`Authenticator`]): no address, nothing crosses a network.
    pub fn local(player: PlayerId) -> Self {
        Self { player, address: None, secure: true, identity: None, local: true }
    }

    /// Whether it is the host's own player (a local client in host mode).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Whether a secret sent by this applicant stayed secret: its connection is secure, or
    /// it is on this machine (a local client, or a loopback address). A remote applicant
    /// whose transport knows no address is not private unless its transport is secure.
    pub fn is_private(&self) -> bool {
        self.secure || self.local || self.address.is_some_and(|address| address.ip().is_loopback())
    }
}

/// Decides whether a connected client may play.
///
/// After the transport connects, the client sends its credentials (set with
/// [`NetworkClient::set_credentials`](crate::NetworkClient::set_credentials)); the server
/// decodes them as [`Credentials`](Self::Credentials) and calls
/// [`authenticate`](Self::authenticate). On `Ok` the data is attached to the player (read it
/// with [`Player::auth_data`](crate::Player::auth_data)) and both sides see `Authenticated`; on
/// `Err` the client is told the reason and disconnected. Until then, anything else the client
/// sends is dropped and counted.
///
/// ```
/// use sturnus_message::{Applicant, Authenticator};
///
/// /// Lets in anyone who knows today's word, and remembers their team.
/// struct TeamGate;
/// impl Authenticator for TeamGate {
///     type Credentials = (String, u8);
///     type Data = u8;
///     fn authenticate(&mut self, _who: &Applicant, (word, team): (String, u8)) -> Result<u8, String> {
///         if word == "starling" && team < 2 { Ok(team) } else { Err("no".into()) }
///     }
/// }
/// ```
pub trait Authenticator: Send + 'static {
    /// What the client sends.
    type Credentials: DeserializeOwned;
    /// What is attached to an accepted player.
    type Data: Any + Send;

    /// Accepts (with the player's data) or rejects (with a reason the client receives).
    fn authenticate(
        &mut self,
        applicant: &Applicant,
        credentials: Self::Credentials,
    ) -> Result<Self::Data, String>;
}

/// Lets everyone in; the default. Its credentials are `()`, which a client sends unless told
/// otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopAuthenticator;

impl Authenticator for NoopAuthenticator {
    type Credentials = ();
    type Data = ();

    fn authenticate(&mut self, _: &Applicant, (): ()) -> Result<(), String> {
        Ok(())
    }
}

/// The credentials of a [`PasswordAuthenticator`]: a display name and the shared password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The name the player wants to be known by (1 to 32 characters).
    pub name: String,
    /// The server's password.
    pub password: String,
}

/// Lets in clients that know a shared password, and attaches their chosen name (a `String`) to
/// the player.
///
/// Fit for a private game among friends. A password must not cross a network in the clear:
/// it refuses a player whose connection is plaintext and not local (see
/// [`Applicant::is_private`]) — run the server on a secure transport (the netcode transport
/// mode), or call [`allow_plaintext`](Self::allow_plaintext) for development on a trusted
/// network. (The client, for its part, does not send a [`Login`] over such a connection.)
/// Real accounts want connect tokens minted by an account service: see
/// [`TokenAuthenticator`].
#[derive(Clone)]
pub struct PasswordAuthenticator {
    password: String,
    allow_plaintext: bool,
}

impl std::fmt::Debug for PasswordAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordAuthenticator").finish_non_exhaustive()
    }
}

impl PasswordAuthenticator {
    /// An authenticator for `password`.
    pub fn new(password: impl Into<String>) -> Self {
        Self { password: password.into(), allow_plaintext: false }
    }

    /// Accepts passwords that crossed a plaintext connection from another host too: for
    /// development on a trusted network only.
    #[must_use]
    pub fn allow_plaintext(mut self) -> Self {
        self.allow_plaintext = true;
        self
    }
}

/// Compares without returning early, so the time taken does not tell how much matched.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

impl Authenticator for PasswordAuthenticator {
    type Credentials = Login;
    type Data = String;

    fn authenticate(&mut self, applicant: &Applicant, login: Login) -> Result<String, String> {
        if !applicant.is_private() && !self.allow_plaintext {
            return Err("a password login needs an encrypted connection (this server does not \
                        accept passwords sent in the clear)"
                .into());
        }
        if !same_bytes(login.password.as_bytes(), self.password.as_bytes()) {
            return Err("wrong password".into());
        }
        let chars = login.name.chars().count();
        if !(1..=32).contains(&chars) || login.name.chars().any(char::is_control) {
            return Err("the name must be 1 to 32 printable characters".into());
        }
        Ok(login.name)
    }
}

/// Lets in the players whose connection presented a connect token: with the netcode transport
/// mode, the game's backend (an account service, a matchmaker) mints each player a token
/// sealed under the key it shares with the servers, so the token is the login and no password
/// crosses the network. The token's client id and user data are attached to the player (read
/// them with [`Player::auth_data`](crate::Player::auth_data) as a
/// [`PeerIdentity`]).
///
/// A player whose transport proved nothing (a plaintext transport, or a client of netcode's
/// native profile, which presents no token) is refused. The host's own
/// player (a local client in host mode) is let in with client id 0 and no user data.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenAuthenticator;

impl Authenticator for TokenAuthenticator {
    type Credentials = ();
    type Data = PeerIdentity;

    fn authenticate(&mut self, applicant: &Applicant, (): ()) -> Result<PeerIdentity, String> {
        match &applicant.identity {
            Some(identity) => Ok(identity.clone()),
            None if applicant.is_local() => {
                Ok(PeerIdentity { client_id: 0, user_data: Box::new([]) })
            }
            None => Err("this server admits players with a connect token (netcode)".into()),
        }
    }
}

/// An [`Authenticator`] with its types erased, as the server keeps it.
pub(crate) trait ErasedAuthenticator: Send {
    fn authenticate(
        &mut self,
        applicant: &Applicant,
        credentials: &[u8],
    ) -> Result<Box<dyn Any + Send>, String>;
}

pub(crate) struct Erased<A>(pub(crate) A);

impl<A: Authenticator> ErasedAuthenticator for Erased<A> {
    fn authenticate(
        &mut self,
        applicant: &Applicant,
        credentials: &[u8],
    ) -> Result<Box<dyn Any + Send>, String> {
        let credentials = codec::decode::<A::Credentials>(credentials)
            .ok_or_else(|| "malformed credentials".to_string())?;
        let data = self.0.authenticate(applicant, credentials)?;
        Ok(Box::new(data))
    }
}

/// Client → server: the encoded credentials.
#[derive(Serialize, Deserialize, Message)]
pub(crate) struct AuthRequest(pub(crate) Vec<u8>);

/// Server → client: the verdict.
#[derive(Serialize, Deserialize, Message)]
pub(crate) enum AuthResponse {
    Accepted,
    Rejected(String),
    /// Not evaluated: the client's address is over the server's authentication throttle.
    Throttled {
        retry_after_ms: u64,
    },
}

/// Server → client: why the server is closing the connection.
#[derive(Serialize, Deserialize, Message)]
pub(crate) struct Goodbye(pub(crate) GoodbyeReason);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_checks_password_and_name() {
        let mut auth = PasswordAuthenticator::new("hunter2");
        let who = Applicant::local(PlayerId(1));
        let login =
            |name: &str, password: &str| Login { name: name.into(), password: password.into() };
        assert_eq!(auth.authenticate(&who, login("ada", "hunter2")), Ok("ada".to_string()));
        assert!(auth.authenticate(&who, login("ada", "hunter")).is_err());
        assert!(auth.authenticate(&who, login("ada", "hunter22")).is_err());
        assert!(auth.authenticate(&who, login("", "hunter2")).is_err());
        assert!(auth.authenticate(&who, login("a\nb", "hunter2")).is_err());
    }

    #[test]
    fn passwords_must_not_have_crossed_a_network_in_the_clear() {
        let login = || Login { name: "ada".into(), password: "hunter2".into() };
        let remote = Some("203.0.113.9:5000".parse().unwrap());
        let loopback = Some("127.0.0.1:5000".parse().unwrap());
        let mut auth = PasswordAuthenticator::new("hunter2");
        let plaintext = Applicant::new(PlayerId(1), remote, false, None);
        assert!(auth.authenticate(&plaintext, login()).unwrap_err().contains("encrypted"));
        let secure = Applicant::new(PlayerId(1), remote, true, None);
        assert_eq!(auth.authenticate(&secure, login()), Ok("ada".into()));
        let local = Applicant::new(PlayerId(1), loopback, false, None);
        assert_eq!(auth.authenticate(&local, login()), Ok("ada".into()));
        let nowhere = Applicant::new(PlayerId(1), None, false, None);
        assert!(auth.authenticate(&nowhere, login()).is_err(), "no address is not local");
        let mut relaxed = PasswordAuthenticator::new("hunter2").allow_plaintext();
        assert_eq!(relaxed.authenticate(&plaintext, login()), Ok("ada".into()));
    }

    #[test]
    fn a_token_is_the_login() {
        let remote = Some("203.0.113.9:5000".parse().unwrap());
        let identity = PeerIdentity { client_id: 9, user_data: Box::new([1, 2, 3]) };
        let mut auth = TokenAuthenticator;
        let with_token = Applicant::new(PlayerId(1), remote, true, Some(identity.clone()));
        assert_eq!(auth.authenticate(&with_token, ()), Ok(identity));
        let without = Applicant::new(PlayerId(1), remote, true, None);
        assert!(auth.authenticate(&without, ()).is_err());
        let host = Applicant::local(PlayerId(1));
        assert_eq!(auth.authenticate(&host, ()).map(|i| i.client_id), Ok(0));
        // A remote player whose transport knows no address is not the host's.
        let nowhere = Applicant::new(PlayerId(2), None, true, None);
        assert!(auth.authenticate(&nowhere, ()).is_err());
    }

    #[test]
    fn same_bytes_compares_whole_slices() {
        assert!(same_bytes(b"", b""));
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"ab", b"abc"));
        assert!(!same_bytes(b"abc", b"ab"));
    }

    #[test]
    fn erased_rejects_malformed_credentials() {
        let mut auth = Erased(PasswordAuthenticator::new("x"));
        let who = Applicant::local(PlayerId(1));
        assert_eq!(
            auth.authenticate(&who, &[0xff, 0xff]).err().as_deref(),
            Some("malformed credentials")
        );
    }
}
