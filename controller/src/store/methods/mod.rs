//! The [`Store`](super::Store) methods whose SQL, binding and row mapping are the same on
//! both databases, written once: `impl_store!` expands them, with the backend's own methods,
//! into one `impl Store` per backend. (A macro rather than generic functions: sqlx code
//! generic over the database needs a bound per bound type and per executor, and those
//! futures then fail `async_trait`'s `Send` check.)
//!
//! A backend provides, beside the methods it passes in:
//! - `self.pool`: its connection pool;
//! - `self.begin_write()`: how it starts a transaction that writes;
//! - `Self::lock_app(&mut tx, app)`: what keeps two writers from racing for an app's next
//!   spec version inside that transaction;
//! - `Self::TOUCH_HOST`: the SQL that moves a host's `last_seen` (`$1` = now, `$2` = host).
//!
//! The methods are written per concept, one macro each (`releases`, `hosts`, `tokens`,
//! `rollouts`, `events`), chained: each adds its methods to those it is given and hands them
//! on to the next; the last, `store_impl!`, writes them out as one `impl Store` (one, because
//! `async_trait` rewrites the methods it sees in the impl and does not expand macros in it).

mod events;
mod hosts;
mod releases;
mod rollouts;
mod tokens;

pub(super) use events::event_methods;
pub(super) use hosts::host_methods;
pub(super) use releases::release_methods;
pub(super) use rollouts::rollout_methods;
pub(super) use tokens::token_methods;

/// The whole `impl Store` for `$store`: the shared methods, per concept, and the backend's own.
macro_rules! impl_store {
    ($store:ty { $($own:tt)* }) => {
        $crate::store::methods::release_methods! {
            $store { $($own)* }
            host_methods token_methods rollout_methods event_methods store_impl
        }
    };
}

/// The end of the chain: every method gathered, in one `impl Store`.
macro_rules! store_impl {
    ($store:ty { $($methods:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            $($methods)*
        }
    };
}

pub(super) use impl_store;
pub(super) use store_impl;
