//! The seed's bootstrap data: what the pipeline needs before its first upload and that no
//! step of the seed writes. Loading is idempotent: what exists is left as it is.
//!
//! - the static data item of ICAO 1947 (seed 1.3), the Upload Board's dropdowns;
//! - the three `wp_users` rows (seed 1.4);
//! - the base kustomize template (seed 5.3) under the configured `helmChart` name;
//! - the `wp_image_guid` pool (seed 6.2): the seed's 14 GUIDs, topped up with random
//!   UUIDs to 500 free ones (the seed's table was made with 500 rows).

use crate::config::Settings;
use crate::model::{base_template, BaseKustomizeItem, FilterCriteria, StaticDataItem};
use crate::store::tables::{TableError, TablesExt};
use crate::store::viewport::{ViewPortError, WpUser};
use crate::store::Stores;
use crate::time::Created;

/// The ICAO code the seed's static data is for.
pub const STATIC_DATA_ICAO: &str = "1947";

/// How many free GUIDs the pool is topped up to.
pub const GUID_POOL_SIZE: u64 = 500;

/// The GUIDs of the seed's `wp_image_guid` rows (6.2), in id order.
pub const SEED_GUIDS: [&str; 14] = [
    "c842fb05-adcf-40c8-b53a-9b3ea0705e55",
    "06a6d12a-2701-47bd-8167-f83fcc4ebe5c",
    "f5abcbae-1e38-473a-9028-d49b71993c50",
    "157d4358-016b-46a5-827f-188f1ae55c5f",
    "40b780c4-e295-44fb-92e5-661ec1f51829",
    "c682850c-c030-40ba-91fb-2a61f9f1af30",
    "a803fc13-7634-4551-b912-def296dfc6c6",
    "d00d3a94-aa6e-447e-9b99-626515ed6e35",
    "cd92d0c4-3877-4132-8604-e537af50efb7",
    "bfa6ea08-12a6-4ad4-ba77-325e8d644305",
    "e8be71f7-9cf9-47c9-b9d9-20f0673bff51",
    "7e2ec94f-0821-4e08-b4e2-4b2566110ed0",
    "fc8b582c-e653-44f8-8182-da987ddd457a",
    "2bc42d8d-735a-483e-b936-8f0645eaa9ac",
];

/// The seed's static data item for ICAO 1947 (seed 1.3), stamped now.
pub fn static_data() -> StaticDataItem {
    let strings = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
    StaticDataItem {
        criteria: FilterCriteria {
            icao_code: STATIC_DATA_ICAO.into(),
            aircraft_tail_number: strings(&["41-38116", "42-13400"]),
            image_category: strings(&["Games", "Movies", "Books", "Shopping", "Weather", "Video"]),
            part_number: strings(&["21117-1", "211-171"]),
        },
        created: Created::now(),
    }
}

/// The seed's `wp_users` rows (seed 1.4).
pub fn users() -> Vec<WpUser> {
    let user = |id, login: &str, email: &str, name: &str| WpUser {
        id,
        user_login: login.into(),
        user_email: email.into(),
        display_name: name.into(),
    };
    vec![
        user(2, "jamesbond", "jamesbond@k8or.com", "James Bond"),
        user(3, "madamecoco", "madamecoco@k8or.com", "Madame Coco"),
        user(4, "k8or_admin", "admin@k8or.com", "k8or Admin"),
    ]
}

/// The base template item (seed 5.3) under `helm_chart`, stamped now.
pub fn base_kustomize(helm_chart: &str) -> BaseKustomizeItem {
    BaseKustomizeItem {
        helm_chart: helm_chart.to_owned(),
        helm_chart_data: base_template(),
        created: Created::now(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("loading bootstrap items: {0}")]
    Table(#[from] TableError),
    #[error("loading bootstrap ViewPort rows: {0}")]
    ViewPort(#[from] ViewPortError),
}

/// What a load wrote, and what it found already there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
}

impl BootstrapReport {
    fn record(&mut self, what: String, created: bool) {
        if created {
            self.created.push(what);
        } else {
            self.existing.push(what);
        }
    }
}

/// "3 seed users…" when some were added, "seed users…" when all were there.
fn counted(added: u64, what: &str) -> String {
    if added > 0 {
        format!("{added} {what}")
    } else {
        what.to_owned()
    }
}

/// Loads what is missing. The tables, the ViewPort schema and the stores must exist
/// (`store::open::provision` makes them first).
pub async fn load(stores: &Stores, settings: &Settings) -> Result<BootstrapReport, BootstrapError> {
    let mut report = BootstrapReport::default();

    let created = stores
        .tables
        .put_once(&settings.tables.static_data, &static_data())
        .await?;
    report.record(
        format!(
            "static data {STATIC_DATA_ICAO} in {}",
            settings.tables.static_data
        ),
        created,
    );

    let template = &settings.kustomize.base_template;
    let created = stores
        .tables
        .put_once(&settings.tables.base_kustomize, &base_kustomize(template))
        .await?;
    report.record(
        format!(
            "base template {template:?} in {}",
            settings.tables.base_kustomize
        ),
        created,
    );

    let users = users();
    let added = stores.viewport.seed_users(&users).await?;
    report.record(counted(added, "seed users in wp_users"), added > 0);

    let seeded: Vec<String> = SEED_GUIDS.iter().map(|g| (*g).to_owned()).collect();
    let mut added = stores.viewport.seed_guid_pool(&seeded).await?;
    let free = stores.viewport.free_guids().await?;
    if free < GUID_POOL_SIZE {
        let fill: Vec<String> = (free..GUID_POOL_SIZE)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        added += stores.viewport.seed_guid_pool(&fill).await?;
    }
    report.record(counted(added, "GUIDs in the wp_image_guid pool"), added > 0);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_values_are_the_seeds() {
        let item = serde_json::to_value(static_data()).unwrap();
        assert_eq!(item["ICAOCode"], "1947");
        assert_eq!(
            item["partNumber"],
            serde_json::json!(["21117-1", "211-171"])
        );
        assert!(item["createdTimestampUnix"].is_string());
        let users = users();
        assert_eq!(users.iter().map(|u| u.id).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(users[2].user_email, "admin@k8or.com");
        let unique: std::collections::HashSet<_> = SEED_GUIDS.iter().collect();
        assert_eq!(unique.len(), SEED_GUIDS.len());
        assert!(SEED_GUIDS.iter().all(|g| uuid::Uuid::parse_str(g).is_ok()));
    }
}
