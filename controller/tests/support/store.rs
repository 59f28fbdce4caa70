//! Store test support: a fresh database on a private PostgreSQL cluster, opened as a store.

use slipway_controller::store::{self, Store};
use slipway_tests::postgres::Postgres;
use std::sync::Arc;

pub async fn fresh(pg: &Postgres, db: &str) -> (String, Arc<dyn Store>) {
    let url = pg.create_database(db).unwrap();
    let s = store::open(&url).await.unwrap();
    (url, s)
}
