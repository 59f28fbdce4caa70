//! The certificates of an app's hosts as routes change: files loaded and checked before the
//! route changes, ACME hosts handed to the ACME client.

use std::sync::Arc;

use slipway_proto::EdgeSpec;

use crate::error::ProxyError;
use crate::router::Router;
use crate::tls::{self, HostKeys, Source};

impl Router {
    /// Loads the certificate files of `edge` (if it names files) and checks them for its
    /// hosts. None for apps without TLS or with ACME.
    pub(crate) fn load_certs(
        &self,
        app: &str,
        edge: &EdgeSpec,
    ) -> Result<Option<(Source, HostKeys)>, ProxyError> {
        let Some(t) = &edge.tls else { return Ok(None) };
        if t.acme && self.edge().acme.is_none() {
            return Err(ProxyError::NoAcme(app.to_owned()));
        }
        match (&t.cert, &t.key) {
            (Some(cert), Some(key)) => {
                let (k, stamp) = tls::load_files(app, &edge.hosts, cert, key)?;
                let source = Source::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                    stamp,
                };
                let keys = edge.hosts.iter().map(|h| (h.clone(), k.clone())).collect();
                Ok(Some((source, keys)))
            }
            _ => Ok(None),
        }
    }

    /// Applies the certificates loaded for `app` (or drops them when it has no TLS).
    pub(crate) fn apply_certs(
        &self,
        app: &str,
        certs: Option<(Source, HostKeys)>,
        edge: &EdgeSpec,
    ) {
        match certs {
            Some((source, keys)) => self.edge().certs.set_app(app, source, keys),
            None if edge.tls.as_ref().is_some_and(|t| t.acme) => {}
            None => self.edge().certs.remove_app(app),
        }
    }

    /// The ACME client, if configured (for its renewal loop).
    pub(crate) fn acme(&self) -> Option<Arc<crate::acme::Acme>> {
        self.edge().acme.clone()
    }

    /// Hands `app`'s hosts to ACME when its TLS asks for it (else forgets it there).
    pub(crate) fn apply_acme(&self, app: &str, edge: &EdgeSpec) {
        let Some(acme) = &self.edge().acme else {
            return;
        };
        if edge.tls.as_ref().is_some_and(|t| t.acme) {
            acme.set_app(app, &edge.hosts);
        } else {
            acme.remove_app(app);
        }
    }

    /// The certificate store (for the reload watcher and ACME).
    pub(crate) fn certs(&self) -> Arc<tls::CertStore> {
        self.edge().certs.clone()
    }
}
