//! `filter_criteria`: the dropdown options of the Upload Board (seed 1.2, 1.3).

use serde::{Deserialize, Serialize};

use crate::time::Created;

/// `filter_criteria` as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterCriteria {
    #[serde(rename = "ICAOCode")]
    pub icao_code: String,
    #[serde(rename = "aircraftTailNumber")]
    pub aircraft_tail_number: Vec<String>,
    #[serde(rename = "imageCategory")]
    pub image_category: Vec<String>,
    #[serde(rename = "partNumber")]
    pub part_number: Vec<String>,
}

/// The portal-upload-static-data item: the criteria and the two timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticDataItem {
    #[serde(flatten)]
    pub criteria: FilterCriteria,
    #[serde(flatten)]
    pub created: Created,
}
