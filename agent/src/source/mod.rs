//! Where desired state comes from: a directory of signed release files, or the controller.
//! Either way the result is the same shape — app name -> signed envelope bytes — and nothing
//! in it is trusted until the reconciler has verified it.

pub mod controller;
pub mod dir;

use std::collections::BTreeMap;

/// The desired set: app name -> signed release envelope (JSON bytes), unverified; and what
/// the controller sealed to this host of each app's pinned secrets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub releases: BTreeMap<String, Vec<u8>>,
    pub secrets: BTreeMap<String, crate::secrets::Sealed>,
    /// App -> a signed release this host gets in a later wave of a running rollout (from
    /// the controller only): its image is pulled ahead, nothing runs.
    pub upcoming: BTreeMap<String, Vec<u8>>,
}
