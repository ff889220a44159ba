//! `sturnusd`, Sturnus's self-hosted services: a matchmaker (UNET's `NetworkMatch` and more)
//! and a relay, on one machine with an embedded store or scaled out on Redis.

pub mod store;
